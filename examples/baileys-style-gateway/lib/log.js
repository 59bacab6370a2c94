'use strict';
// One JSON object per line on stderr, with the note's event names (R8). Never given a token.
function log(event, fields = {}) {
  process.stderr.write(`${JSON.stringify({ t: Date.now() / 1000, event, ...fields })}\n`);
}
module.exports = { log };
