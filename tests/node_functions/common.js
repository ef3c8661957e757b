// A CommonJS handler in NAME.js.
exports.handler = async (event) => ({
  type: "HTTPJSON-REP",
  meta: { status: 201, headers: { "content-type": "application/json" } },
  body: JSON.stringify({ module: "commonjs", path: event.meta.path }),
});
