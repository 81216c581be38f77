// npm sip's examples/registrar-proxy.js as the package ships it, with two changes: its logger
// (util.debug, gone from Node.js since version 12) is left out, and the listening address is
// chosen here. A request for a registered user is proxied to its contact; anything else gets 404.
'use strict';
const sip = require('sip');
const proxy = require('sip/proxy');
const [address, port] = [process.argv[2], Number(process.argv[3])];

const contacts = {};

proxy.start({ address: address, port: port, udp: true, tcp: false }, function(rq) {
  if (rq.method === 'REGISTER') {
    const user = sip.parseUri(rq.headers.to.uri).user;
    contacts[user] = rq.headers.contact;
    const rs = sip.makeResponse(rq, 200, 'Ok');
    rs.headers.to.tag = Math.floor(Math.random() * 1e6);
    proxy.send(rs);
  } else {
    const user = sip.parseUri(rq.uri).user;
    if (contacts[user] && Array.isArray(contacts[user]) && contacts[user].length > 0) {
      rq.uri = contacts[user][0].uri;
      proxy.send(sip.makeResponse(rq, 100, 'Trying'));
      proxy.send(rq);
    } else {
      proxy.send(sip.makeResponse(rq, 404, 'Not Found'));
    }
  }
});
