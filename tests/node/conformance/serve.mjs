// Runs a tiny node HTTP handler wrapped by serverless-http on each event.
// Usage: node serve.mjs EVENTS.json
// EVENTS.json: [{"label": ..., "event": {...}}, ...]
// Prints one JSON line: {label: <the handler's result, or {"error": ...}>}.
import { readFileSync } from 'node:fs';
import serverless from 'serverless-http';

// Answers 201 with what it saw, two cookies and a header of its own.
function app(req, res) {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  // serverless-http 4.0 emits 'end' twice for an empty body: answer once.
  req.once('end', () => {
    const url = new URL(req.url, 'http://function.invalid');
    const seen = {
      method: req.method,
      path: url.pathname,
      query: [...url.searchParams],
      cookie: req.headers.cookie ?? null,
      multi: req.headers['x-multi'] ?? null,
      body: Buffer.concat(chunks).toString('base64'),
    };
    res.statusCode = 201;
    res.setHeader('content-type', 'application/json');
    res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; HttpOnly']);
    res.setHeader('x-served-by', 'serverless-http');
    res.end(JSON.stringify(seen));
  });
}

const handler = serverless(app);
const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const results = {};
for (const { label, event } of cases) {
  try {
    results[label] = await handler(event, { awsRequestId: 'node-conformance' });
  } catch (error) {
    results[label] = { error: String(error && error.stack ? error.stack : error) };
  }
}
console.log(JSON.stringify(results));
