// The OpenID provider Cairn's tests run on loopback: oidc-provider (OpenID Certified), configured from a
// JSON file the test writes (node idp.mjs <config.json>). It prints one JSON line {"issuer": ...} once
// it listens, then serves until killed.
//
// config: {"port": 0, "jwks": {"keys": [private JWKs]}, "clients": [oidc-provider client metadata],
//          "users": {"<id>": {"email": ..., "preferred_username": ..., "groups": [...]}},
//          "resource": "<Cairn's resource URI>", "access_token_ttl": 300}
//
// Sign-in is a plain form instead of oidc-provider's development pages: GET /interaction/<uid> shows
// the form, POST /interaction/<uid>/login with login=<user id> signs that user in (no password: a test
// provider). Consent is given at once for whatever the client asked. Access tokens for `resource` are
// JWTs (RFC 9068) bound to it by `aud`, carrying the user's email, preferred_username and groups.
import fs from 'node:fs';
import http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const users = config.users || {};

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function profile(id) {
  const user = users[id];
  return {
    sub: id,
    email: user.email,
    email_verified: true,
    preferred_username: user.preferred_username,
    name: user.name || user.preferred_username,
    groups: user.groups || [],
  };
}

const server = http.createServer();
await new Promise((resolve) => { server.listen(config.port || 0, '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: config.jwks,
  cookies: { keys: ['cairn-test-idp-cookie-key'] },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  async findAccount(_ctx, id) {
    if (!users[id]) return undefined;
    return { accountId: id, async claims() { return profile(id); } };
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => true },
  clientBasedCORS: () => true,
  ttl: { AccessToken: config.access_token_ttl || 300 },
  async extraTokenClaims(_ctx, token) {
    // Only JWT access tokens for Cairn carry who the user is (the IdPs' "claims in access token" mappers).
    if (token.kind !== 'AccessToken' || !token.resourceServer || !users[token.accountId]) return undefined;
    const { email, preferred_username, groups } = profile(token.accountId);
    return { email, preferred_username, groups };
  },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: () => true,
      async getResourceServerInfo(_ctx, resourceIndicator) {
        if (config.resource && resourceIndicator === config.resource) {
          return {
            scope: 'cairn',
            audience: config.resource,
            accessTokenFormat: 'jwt',
            accessTokenTTL: config.access_token_ttl || 300,
            jwt: { sign: { alg: 'RS256' } },
          };
        }
        throw new errors.InvalidTarget();
      },
    },
  },
});
provider.proxy = false;

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    if (action !== 'login') {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(`<!doctype html><form method="post" action="/interaction/${esc(uid)}/login">`
        + '<input name="login"><button>Sign in</button></form>');
      return;
    }
    const login = (await readForm(req)).get('login') || '';
    if (!users[login]) {
      res.statusCode = 400;
      res.end(`unknown user ${esc(login)}`);
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  res.statusCode = 400;
  res.end(`unsupported prompt ${esc(prompt.name)}`);
}

const callback = provider.callback();
server.on('request', (req, res) => {
  const match = /^\/interaction\/([\w-]+)(?:\/(login))?$/.exec(new URL(req.url, issuer).pathname);
  if (!match) {
    callback(req, res);
    return;
  }
  interaction(req, res, match[1], match[2]).catch((err) => {
    res.statusCode = 400;
    res.end(`interaction failed: ${esc(err.message)}`);
  });
});

process.stdout.write(`${JSON.stringify({ issuer })}\n`);
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => { server.close(); process.exit(0); });
