// Node names from the caller's stack, and error messages for the host.

// A frame's file, line and column, in the stack formats of QuickJS and V8
// ("    at f (/app.js:3:10)", "    at /app.js:3:10") and SpiderMonkey ("f@app.js:3:10").
const FRAME = /(?:\(|@|at )([^()@\s][^()@]*?):(\d+):(\d+)\)?\s*$/;

function frames(stack) {
  const out = [];
  for (const line of String(stack || '').split('\n')) {
    const m = FRAME.exec(line);
    if (m) out.push({ file: m[1], line: Number(m[2]) });
  }
  return out;
}

function dirOf(file) { const i = file.lastIndexOf('/'); return i < 0 ? '' : file.slice(0, i + 1); }

/** The directory of the SDK's own modules: frames there are skipped. */
const SDK_DIR = (() => { const f = frames(new Error('x').stack); return f.length ? dirOf(f[0].file) : '\u0000'; })();

/** How a file is shown: its path in the component ("/app.js" -> "app.js"), or a URL's or a path's base name. */
function shown(file) {
  if (file.startsWith('file://') || file.startsWith('node:')) return file.slice(file.lastIndexOf('/') + 1);
  return file.replace(/^\/+/, '');
}

/** `<file>:<line>` of the user's code that called into the SDK. */
export function caller() {
  for (const f of frames(new Error('x').stack)) {
    if (!f.file.startsWith(SDK_DIR)) return `${shown(f.file)}:${f.line}`;
  }
  return 'unknown place';
}

/** "Name: message" of anything thrown. */
export function messageOf(e) {
  if (e instanceof Error) return `${e.name || 'Error'}: ${e.message}`;
  if (typeof e === 'string') return e;
  try { return `thrown ${JSON.stringify(e)}`; } catch (_) { return `thrown ${String(e)}`; }
}

/** The error string for the host: the operator, the message, and the stack (the SDK's own frames left out). */
export function report(node, e) {
  let text = node ? `${node}: ${messageOf(e)}` : messageOf(e);
  if (e instanceof Error && e.stack) {
    const lines = String(e.stack).split('\n').filter((l) => {
      const m = FRAME.exec(l);
      if (!m) return false;
      // Not the SDK's frames, nor componentize-js's generated glue.
      return !m[1].startsWith(SDK_DIR) && !m[1].endsWith('/sources/initializer.js');
    });
    if (lines.length) text += '\n' + lines.map((l) => l.replace(/^\s*/, '    ')).join('\n');
  }
  return text;
}
