"""House staff admin for casino's records, one module per concern:

  operators.py   operators (create, rotate key / wallet secret) and staff API tokens
  players.py     players and the staff balance adjustment
  markets.py     markets, casino settings, reference prices
  records.py     trades, positions, exposure shards (read-only)

The building blocks (read-only and singleton mixins, the rotation confirmation) are the
kernel's: core/admin.py.
"""

from casino.admin import markets, operators, players, records  # noqa: F401 - registers the model admins
