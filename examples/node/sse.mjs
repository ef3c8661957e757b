export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const out = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 200,
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
  });
  for (const word of ["one", "two", "three"]) {
    out.write(`data: ${word}\n\n`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  out.end();
});
