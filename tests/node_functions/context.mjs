// What the Node.js runtime client handed the handler: the context and the environment.
export const handler = async (event, context) => ({
  type: "HTTPJSON-REP",
  meta: { status: 200, headers: { "content-type": "application/json" } },
  body: JSON.stringify({
    functionName: context.functionName,
    awsRequestId: context.awsRequestId,
    invokedFunctionArn: context.invokedFunctionArn,
    remainingPositive: context.getRemainingTimeInMillis() > 0,
    handler: process.env._HANDLER,
    taskRoot: process.env.LAMBDA_TASK_ROOT,
    cwd: process.cwd(),
    hasAwsSecret: "AWS_SECRET_ACCESS_KEY" in process.env,
    method: event.meta.method,
  }),
});
