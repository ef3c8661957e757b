// A real OpenID Connect provider (oidc-provider) on 127.0.0.1, for the JWT
// authorizer's end-to-end tests.  It issues JWT access tokens by the
// client-credentials grant for two resource indicators, one signed RS256 and
// one ES256, with keys made at start.  It prints one JSON line
// {"issuer": ...} once it listens, and stops when its stdin closes.
//
// Usage: node serve.mjs CLIENT_ID CLIENT_SECRET
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const [clientId, clientSecret] = process.argv.slice(2);
if (!clientId || !clientSecret) {
  process.stderr.write('usage: node serve.mjs CLIENT_ID CLIENT_SECRET\n');
  process.exit(2);
}

export const RESOURCES = {
  'https://orders.example.test/rs256': 'RS256',
  'https://orders.example.test/es256': 'ES256',
};
const SCOPES = 'orders:read orders:write';

function signingKey(type, options, kid, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const jwks = {
  keys: [
    signingKey('rsa', { modulusLength: 2048 }, 'rsa-1', 'RS256'),
    signingKey('ec', { namedCurve: 'P-256' }, 'p256-1', 'ES256'),
  ],
};

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    jwks,
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: SCOPES,
    }],
    scopes: SCOPES.split(' '),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client, oneOf) => oneOf,
        useGrantedResource: () => false,
        getResourceServerInfo: (ctx, resource) => {
          const alg = RESOURCES[resource];
          if (!alg) {
            throw new Provider.errors.InvalidTarget();
          }
          return {
            audience: resource,
            scope: SCOPES,
            accessTokenTTL: 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg } },
          };
        },
      },
    },
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.stdin.on('end', () => server.close(() => process.exit(0)));
process.stdin.resume();
