// ingressd stream peer picker (njs, nginx stream module): js_preread handler.
//
// Data flow:
//   controller --writes atomically--> <work>/stream/<backend>.json  ["addr:port", ...]
//   connection --preread()--> $ingressd_peers (the file, set per server or by SNI map)
//       --read + parse--> endpoints; none -> the connection is refused (closed)
//       --pick--> $ingressd_peer --proxy_pass-->
//
// Debian's njs (0.7.9) has no shared dict and clones its VM per connection, so nothing
// survives between connections: the file is read each time (a few hundred bytes), and the
// peer is drawn at random. (nginx's connection serial is no rotation: every worker and every
// listener draws from it, and a passthrough session takes four numbers, a TCP service two.)
var fs = require('fs');

function endpoints(path) {
    if (!path) {
        return null;
    }
    try {
        var list = JSON.parse(fs.readFileSync(path));
        return Array.isArray(list) && list.length > 0 ? list : null;
    } catch (e) {
        return null;
    }
}

function pick(s, path) {
    var list = endpoints(path);
    if (list === null) {
        s.warn('ingressd: no endpoints in ' + (path || '(no backend)'));
        s.deny();
        return;
    }
    s.variables.ingressd_peer = String(list[Math.floor(Math.random() * list.length)]);
    s.done();
}

// Each server (a TCP/UDP service, a passthrough backend's socket) sets $ingressd_peers to its
// backend's file. (js_preread runs before ssl_preread, so SNI cannot be read here: the HTTPS
// front maps SNI names to a socket per backend instead.)
function preread(s) {
    pick(s, s.variables.ingressd_peers);
}

export default { preread: preread };
