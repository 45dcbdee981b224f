// Starts kinesalite (an in-memory Kinesis-compatible server) on 127.0.0.1
// for les' Kinesis input tests.
//
//   node start.js [port]
//
// port 0 (the default) picks a free port. Once listening, the script prints
// one line "listening <port>" on stdout; it exits when stdin closes (so a
// test that dies does not leave it running) or on SIGTERM/SIGINT.
'use strict'

const kinesalite = require('kinesalite')

const port = Number(process.argv[2] || 0)
const server = kinesalite({
  createStreamMs: 0,
  deleteStreamMs: 0,
  updateStreamMs: 0,
  shardLimit: 50,
})

server.listen(port, '127.0.0.1', (err) => {
  if (err) {
    console.error(err)
    process.exit(1)
  }
  process.stdout.write('listening ' + server.address().port + '\n')
})

const stop = () => server.close(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.resume()
