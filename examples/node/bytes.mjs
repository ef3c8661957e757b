export const handler = async (event) => {
  const { meta } = event;
  const body = event.bodyEncoding === "base64"
    ? Buffer.from(event.body, "base64")
    : event.body;
  return {
    type: "HTTPJSON-REP",
    meta: { status: 200, headers: { "content-type": "application/json" } },
    body: JSON.stringify({ path: meta.path, bytes: body.length }),
  };
};
