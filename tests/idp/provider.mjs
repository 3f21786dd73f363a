// The OpenID Provider that auth-layer's end-to-end tests and demo run against: panva's
// oidc-provider (OpenID Certified), configured from the environment and bound to loopback only.
//
//   PORT           port to listen on (default 3001; 0 lets the system pick a free one, which
//                  is how the tests start it: no two providers can race for one port); the
//                  issuer is http://127.0.0.1:PORT with the port bound, announced on stdout
//                  as `oidc-provider listening on http://127.0.0.1:PORT`
//   CLIENTS        JSON array of client metadata (redirect_uris, post_logout_redirect_uris, ...)
//   SIGNING_KID    the `kid` of the fresh RSA signing key made at start (default "key-1"; tests of
//                  key rotation restart the provider with another)
//   NO_END_SESSION when 1, announce no end_session_endpoint (tests of local-only logout)
//   ROTATE_REFRESH when 1, every refresh returns a new refresh token and the old one is dead
//   REQUIRE_PAR    when 1, only pushed authorization requests (RFC 9126) are taken
//   DPOP_NONCE     when 1, every DPoP proof must carry a nonce the provider gave (RFC 9449, 8
//                  and 9): the first proof to each endpoint is answered `use_dpop_nonce`
//   FAPI2          when 1, the FAPI 2.0 profile is on, and ID tokens are signed PS256
//   ISSUER         the issuer when the provider is reached at another address than its own
//                  (a relay in front, tests/relay.rs); every URL it announces follows it
//   KEEP_ALIVE_MS  how long an idle keep-alive connection is kept (Node's keepAliveTimeout,
//                  announced as `Keep-Alive: timeout=` its whole seconds; Node's 5 s by default)
//   IDLE_CLOSE_MS  close idle connections after this long without announcing it (no
//                  Keep-Alive header), as many servers and balancers do
//   EXIT_WITH_STDIN when 1, exit as soon as standard input closes: the harness keeps a pipe to
//                  it open, and the pipe closes however the process that started it ends
//                  (SIGKILL included), so no provider outlives a test run or a benchmark
//
// Test-only routes (loopback only, never in a real provider):
//   GET  /__test/stats  {"refresh_grants": n, "token_requests": n, "jwks_fetches": n, "userinfo_calls": n,
//                       "dpop_proofs": {path: n}, "use_dpop_nonce": {path: n}, "dpop_jkt": s}:
//                       refresh-token grants, JWKS fetches and userinfo calls served so far,
//                       requests that carried a DPoP proof and answers that asked for a nonce,
//                       by path, and the last `dpop_jkt` a pushed or plain authorization
//                       request named
//   POST /__test/sign   {"header": {...}, "claims": {...}, "key": "provider"|"other"|"none"}: a JWT
//                       signed with the provider's own key (or another key, or unsigned), so tests
//                       can send logout tokens with one defect each
//
// Back-channel logout POSTs go to the clients' loopback URLs: the provider's guard against
// requests to special-use addresses is lifted here, for loopback tests only.
//
// Accounts: any login name is accepted with any password. The account's `name` is the login
// capitalised, its email is login@example.test; a login starting with "big" carries a 6 KB `bio`
// claim, so that the relying party's session outgrows one cookie; a login with a dot is a member
// of an organization, Auth0-style claims in the ID token ("ann.acme": org_id org_acme, org_name
// acme).
import http from 'node:http';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { SignJWT, importJWK } from 'jose';
import Provider from 'oidc-provider';

// A client may give its public key as PEM (`public_key_pem`, `public_key_kid`): registered as
// its `jwks`, for private_key_jwt.
const clients = JSON.parse(process.env.CLIENTS || '[]').map(({ public_key_pem: pem, public_key_kid: kid, ...client }) => {
  if (!pem) return client;
  const jwk = { ...createPublicKey(pem).export({ format: 'jwk' }), use: 'sig' };
  if (kid) jwk.kid = kid;
  return { ...client, jwks: { keys: [jwk] } };
});

function claimsFor(id) {
  const claims = {
    sub: id,
    name: id.charAt(0).toUpperCase() + id.slice(1),
    nickname: id,
    email: `${id}@example.test`,
    email_verified: true,
  };
  // Auth0's `session_expiry`: the provider's bound on the app's session, ten minutes away.
  if (id.startsWith('brief')) {
    claims.session_expiry = Math.floor(Date.now() / 1000) + 600;
  }
  if (id.startsWith('big')) {
    claims.bio = 'x'.repeat(6000);
  }
  // A member of an organization: "ann.acme" is in org_acme, named "acme".
  const org = id.split('.')[1];
  if (org) {
    claims.org_id = `org_${org}`;
    claims.org_name = org;
  }
  return claims;
}

const fapi2 = process.env.FAPI2 === '1';

function signingKey(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: fapi2 ? 'PS256' : 'RS256' };
}

const kid = process.env.SIGNING_KID || 'key-1';
const providerKey = signingKey(kid);
const otherKey = signingKey(kid);
let refreshGrants = 0;
let tokenRequests = 0;
let jwksFetches = 0;
let userinfoCalls = 0;
let revocations = 0;
const dpopProofs = {};
const useDpopNonce = {};
let dpopJkt = null;
const count = (counter, key) => { counter[key] = (counter[key] || 0) + 1; };

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

async function sign({ header = {}, claims = {}, key = 'provider' }) {
  const alg = fapi2 ? 'PS256' : 'RS256';
  const protectedHeader = { alg, kid, ...header };
  if (key === 'none') {
    return `${b64({ ...protectedHeader, alg: 'none' })}.${b64(claims)}.`;
  }
  const jwk = await importJWK(key === 'other' ? otherKey : providerKey, alg);
  return new SignJWT(claims).setProtectedHeader(protectedHeader).sign(jwk);
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString() || '{}');
}

const configuration = {
  clients,
  jwks: { keys: [providerKey] },
  // Loopback tests only: lift the guard against requests to special-use addresses.
  fetch: (url, options) => {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  rotateRefreshToken: process.env.ROTATE_REFRESH === '1',
  cookies: { keys: ['auth-layer-test-provider-cookie-key'] },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub', 'org_id', 'org_name', 'session_expiry'],
    email: ['email', 'email_verified'],
    profile: ['name', 'nickname', 'bio'],
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: process.env.NO_END_SESSION !== '1' },
    backchannelLogout: { enabled: true },
    revocation: { enabled: true },
    pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: process.env.REQUIRE_PAR === '1' },
    dPoP: process.env.DPOP_NONCE === '1'
      ? { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true }
      : { enabled: true },
    fapi: fapi2 ? { enabled: true, profile: '2.0' } : { enabled: false },
  },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  // "short…" users get refresh tokens of ten minutes (announced in the token response as
  // `refresh_token_expires_in`, below); everyone else oidc-provider's default of 14 days.
  ttl: {
    RefreshToken: (ctx, token) => (token.accountId?.startsWith('short') ? 600 : 14 * 24 * 60 * 60),
  },
  async findAccount(ctx, id) {
    return { accountId: id, claims: async () => claimsFor(id) };
  },
};

// The issuer names the port, so the provider is made once the socket is bound.
function serve(issuer) {
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (ctx, err) => console.error('provider server_error', err));
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc.params.grant_type === 'refresh_token') refreshGrants += 1;
  });
  provider.on('backchannel.error', (ctx, err, client) => console.error('back-channel logout to', client.clientId, 'failed:', err.message));
  provider.use(async (ctx, next) => {
    if (ctx.path === '/__test/stats') {
      ctx.body = {
        refresh_grants: refreshGrants,
        token_requests: tokenRequests,
        jwks_fetches: jwksFetches,
        userinfo_calls: userinfoCalls,
        revocations,
        dpop_proofs: dpopProofs,
        use_dpop_nonce: useDpopNonce,
        dpop_jkt: dpopJkt,
      };
      return;
    }
    if (ctx.get('DPoP')) count(dpopProofs, ctx.path);
    if (ctx.path === '/jwks') jwksFetches += 1;
    if (ctx.path === '/token' && ctx.method === 'POST') tokenRequests += 1;
    if (ctx.path === '/me') userinfoCalls += 1;
    if (ctx.path === '/__test/sign' && ctx.method === 'POST') {
      ctx.body = { jwt: await sign(await readJson(ctx.req)) };
      return;
    }
    await next();
    // Revocations the provider took (RFC 7009: 200), whatever the client's authentication.
    if (ctx.path === '/token/revocation' && ctx.method === 'POST' && ctx.status === 200) revocations += 1;
    // A refresh token's own lifetime, as some providers announce it (`refresh_token_expires_in`),
    // read from the token oidc-provider stored: for the "short…" users.
    if (ctx.path === '/token' && ctx.status === 200 && ctx.body?.refresh_token) {
      const stored = await provider.RefreshToken.find(ctx.body.refresh_token);
      if (stored?.accountId?.startsWith('short')) {
        ctx.body.refresh_token_expires_in = stored.exp - Math.floor(Date.now() / 1000);
      }
    }
    if (ctx.oidc?.params?.dpop_jkt) dpopJkt = ctx.oidc.params.dpop_jkt;
    const challenge = ctx.response.get('WWW-Authenticate') || '';
    if (ctx.body?.error === 'use_dpop_nonce' || challenge.includes('use_dpop_nonce')) count(useDpopNonce, ctx.path);
  });
  return provider.callback();
}

const server = http.createServer();
// KEEP_ALIVE_MS: how long an idle connection is kept (Node announces its whole seconds).
if (process.env.KEEP_ALIVE_MS) server.keepAliveTimeout = Number(process.env.KEEP_ALIVE_MS);
// IDLE_CLOSE_MS: idle connections closed after this long without a word (no Keep-Alive header).
if (process.env.IDLE_CLOSE_MS) {
  server.keepAliveTimeout = 0;
  server.on('connection', (socket) => socket.setTimeout(Number(process.env.IDLE_CLOSE_MS), () => socket.destroy()));
}
server.listen(Number(process.env.PORT ?? 3001), '127.0.0.1', () => {
  const own = `http://127.0.0.1:${server.address().port}`;
  // ISSUER: the address it is reached at, when something (a relay) sits in front.
  const issuer = process.env.ISSUER || own;
  server.on('request', serve(issuer));
  console.log(`oidc-provider listening on ${own}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (process.env.EXIT_WITH_STDIN === '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
