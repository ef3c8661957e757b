// Validates events with the Powertools for AWS Lambda (TypeScript) parser's
// zod schemas.  Usage: node validate.mjs EVENTS.json
// EVENTS.json: [{"label": ..., "schema": <name below>, "event": {...}}, ...]
// Prints one JSON line: {"checked": N, "failures": [{label, schema, issues}]}.
import { readFileSync } from 'node:fs';
import {
  AlbMultiValueHeadersSchema,
  AlbSchema,
  APIGatewayProxyEventSchema,
  APIGatewayProxyEventV2Schema,
  LambdaFunctionUrlSchema,
} from '@aws-lambda-powertools/parser/schemas';

const SCHEMAS = {
  APIGatewayProxyEventSchema,
  APIGatewayProxyEventV2Schema,
  LambdaFunctionUrlSchema,
  AlbSchema,
  AlbMultiValueHeadersSchema,
};

const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const failures = [];
for (const { label, schema, event } of cases) {
  const result = SCHEMAS[schema].safeParse(event);
  if (!result.success) {
    failures.push({ label, schema, issues: result.error.issues });
  }
}
console.log(JSON.stringify({ checked: cases.length, failures }));
