"""The kernel: what every app of the house needs and no app owns.

Errors and the API's exception handler, money rules, metrics, request ids and logging,
prepared statements, idempotency keys, the API building blocks (base view, authentication,
input parsing, rendering, throttling, OpenAPI helpers, keyset pagination, health) and the
admin mixins. It imports no app of the house (an import-linter contract holds it to that):
apps plug in where the kernel needs domain knowledge (credential resolvers in
``core.api.auth``). See docs/architecture.md.
"""
