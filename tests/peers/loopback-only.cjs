// Preload for Node-based test peers: a TCP listen() that names no host binds
// to the loopback address instead of all interfaces.
//
// Usage:  NODE_OPTIONS="--require /abs/path/tests/peers/loopback-only.cjs" node ...
//
// Why: @modelcontextprotocol/server-everything (streamableHttp / sse modes)
// calls `app.listen(PORT)` with no host and has no HOST setting, so by default
// it listens on every interface; the conformance tool's own test servers do
// the same with listen(0). Tests must only ever listen on 127.0.0.1.
//
// How: net.Server#listen() without a host ends in the internal
// `_listen2(address=null, port, ...)` (setupListenHandle, present in Node 20
// and 22), which then binds the unspecified address "::". Filling in the
// address there keeps listen() synchronous (server.address() is valid right
// after listen(0), which the conformance tool relies on); passing a host to
// listen() instead would go through an async DNS lookup and break that.
// An explicit host given by the program, Unix sockets and fds are untouched.
// Override the address with PEER_BIND_HOST (e.g. "::1").
"use strict";
const net = require("node:net");

const HOST = process.env.PEER_BIND_HOST || "127.0.0.1";
const FAMILY = net.isIPv6(HOST) ? 6 : 4;
const orig = net.Server.prototype._listen2;

if (typeof orig !== "function") {
  throw new Error("loopback-only.cjs: net.Server.prototype._listen2 missing in " + process.version);
}

net.Server.prototype._listen2 = function _listen2(address, port, addressType, backlog, fd, flags) {
  if (!address && typeof port === "number" && port >= 0 && typeof fd !== "number") {
    address = HOST;
    addressType = FAMILY;
  }
  return orig.call(this, address, port, addressType, backlog, fd, flags);
};
