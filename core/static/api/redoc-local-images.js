// ReDoc page (templates/api/redoc.html): an <img> pointing off this host gets no src (nothing leaves the host).
// A file, not an inline script, so the Content-Security-Policy allows scripts from this host only.
(function () {
  const offHost = (value) => {
    const url = new URL(String(value), document.baseURI);
    return (url.protocol === "http:" || url.protocol === "https:") && url.host !== location.host;
  };
  const setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (this instanceof HTMLImageElement && String(name).toLowerCase() === "src" && offHost(value)) return;
    return setAttribute.call(this, name, value);
  };
  const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
  Object.defineProperty(HTMLImageElement.prototype, "src", {
    ...src,
    set(value) {
      if (!offHost(value)) src.set.call(this, value);
    },
  });
})();
