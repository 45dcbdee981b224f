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

// kinesalite throws from a request's 'error' handler, so a client that
// drops a connection in the middle of a request (as test/lambda's freeze
// test does on purpose when it restarts the endpoint) would take the
// whole server down. Real Kinesis just drops that request: do the same,
// and still exit on anything else.
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.error('kinesalite: a client aborted a request:', err.message)
    return
  }
  console.error(err)
  process.exit(1)
})

const stop = () => server.close(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.resume()
