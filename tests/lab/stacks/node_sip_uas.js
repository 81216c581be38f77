// The npm `sip` package's own server loop, as its README shows it: every request gets a response
// built by sip.makeResponse. Only the listening address and the status are chosen here.
'use strict';
const sip = require('sip');
const [address, port] = [process.argv[2], Number(process.argv[3])];
sip.start({ address: address, port: port, udp: true, tcp: false }, (rq) => {
  if (rq.method === 'OPTIONS') {
    sip.send(sip.makeResponse(rq, 200, 'OK'));
  } else if (rq.method !== 'ACK') {
    sip.send(sip.makeResponse(rq, 405, 'Method Not Allowed'));
  }
});
