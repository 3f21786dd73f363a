// A test OpenID Provider of auth-layer's own that misbehaves on purpose: the rejection cases of
// conformance.md. It serves discovery, a JWKS, an authorization endpoint that answers at once
// (no login page) and a token endpoint whose answer a test spoils by naming a scenario
// ('strict-rotation': only the newest refresh token works, a used one is refused, slowly):
//
//   POST /__scenario {"name": "..."}   the next answers follow that scenario (SCENARIO: the
//                                      first, for those discovery and the first JWKS fetch see)
//   GET  /__stats (or /__test/stats)   counters, and what the last requests carried (the
//                                      authorization request's parameters, how the client
//                                      authenticated, how userinfo got the access token, the
//                                      end-session request's parameters, the last session id)
//   POST /__test/backchannel {"variant": "...", "to": "URL"}
//                                      signs a logout token for the last session, spoiled as the
//                                      variant says, posts it to `to` and answers its status
//
//   SCENARIO                           the first scenario; `fapi2:NAME` plays the FAPI 2.0
//                                      client plan's provider in scenario NAME: ID tokens
//                                      signed PS256, `private_key_jwt` announced, and DPoP proofs
//                                      checked at PAR, token and userinfo, with a nonce required
//                                      (but in 'no-dpop-nonce'); a request with a proof gets a
//                                      `DPoP` token (any profile)
//   PORT, CLIENT_ID, CLIENT_SECRET     where it listens (0: a free port the system picks) and
//                                      the one client it knows; stdout announces the port:
//                                      `hostile provider listening on http://127.0.0.1:PORT`
//
// Never use it for anything but tests: it signs whatever it is told to.
import http from 'node:http';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { EmbeddedJWK, SignJWT, calculateJwkThumbprint, importJWK, jwtVerify } from 'jose';

// Known once the socket is bound (PORT may be 0); no request arrives before it is announced.
let issuer;
const clientId = process.env.CLIENT_ID || 'test-app';
const clientSecret = process.env.CLIENT_SECRET || '';

function rsaKey(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
}
function ecKey(kid) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'ES256' };
}
let published = rsaKey('hostile-key');
// Keys only some scenarios use are made when first needed, then kept: an RSA key costs a
// noticeable part of a second, and a start that made them all was slow on a busy machine.
const once = (make) => { let key; return () => (key ??= make()); };
const impostor = once(() => rsaKey('hostile-key'));
const unpublished = once(() => rsaKey('never-published'));
// Published too: a key of another algorithm (the discovery document lists ES256 as well), for
// tokens signed with an algorithm the client did not register.
const publishedEc = ecKey('hostile-ec-key');
const publicJwk = ({ kty, n, e, crv, x, y, kid, use, alg }) => ({ kty, n, e, crv, x, y, kid, use, alg });
const withoutKid = ({ kid, ...rest }) => rest;
// More RSA keys, published without a `kid` with `published` in 'kid-absent-multiple'.
const extraRsa = once(() => [rsaKey('extra-1'), rsaKey('extra-2')]);
// A path of its own per start, for 'jwks-random-path' (the RP must use the discovered jwks_uri).
const jwksSuffix = randomBytes(6).toString('hex');

const [profile, firstScenario] = (process.env.SCENARIO || 'ok').includes(':')
  ? process.env.SCENARIO.split(':')
  : ['oidc', process.env.SCENARIO || 'ok'];
let scenario = firstScenario;
const fapi2 = profile === 'fapi2';
// The FAPI 2.0 profile's signing key (PS256), published with the others.
const publishedPs = once(() => ({ ...rsaKey('hostile-ps-key'), alg: 'PS256' }));
// The DPoP nonce this provider's servers give (one for all, as oidc-provider's).
// 'nonce-rotates': a new one before the first token request, which is then asked to use it.
let dpopNonce = `nonce-${randomBytes(12).toString('base64url')}`;
let nonceRotated = false;
// The `jti` of each client assertion the token endpoint received, in order.
const tokenAssertionJtis = [];
// What the DPoP proofs carried, by path: {count, nonced, jkt}; and the nonce challenges.
const dpopSeen = {};
const nonceChallenges = {};
let parParams = null;
// Pushed authorization requests, by the request_uri they were given.
const pushed = new Map();
let refreshGrants = 0;
let jwksFetches = 0;
let userinfoCalls = 0;
let authorizeCalls = 0;
let idTokensIssued = 0;
// What the last requests carried.
let lastAuthorize = null;
let tokenAuth = null;
let userinfoAuth = null;
let lastEndSession = null;
let lastSid = null;
// The one refresh token that works in the 'strict-rotation' scenario.
let latestRefresh = 'rt-hostile';
const codes = new Map();
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

async function sign(claims, { key = published, alg = 'RS256', header = {}, kid = true } = {}) {
  if (alg === 'none') return `${b64({ alg: 'none', ...header })}.${b64(claims)}.`;
  if (alg === 'HS256') {
    return new SignJWT(claims).setProtectedHeader({ alg, ...header }).sign(new TextEncoder().encode(clientSecret));
  }
  const protectedHeader = kid ? { alg, kid: key.kid, ...header } : { alg, ...header };
  return new SignJWT(claims).setProtectedHeader(protectedHeader).sign(await importJWK(key, alg));
}

// The JWKS the provider publishes under the scenario.
function jwks() {
  switch (scenario) {
    case 'kid-absent-single': return [withoutKid(publicJwk(published))];
    case 'kid-absent-multiple':
      return [published, ...extraRsa()].map((k) => withoutKid(publicJwk(k))).concat([withoutKid(publicJwk(publishedEc))]);
    // The FAPI 2.0 profile's PS256 key is published in that profile only.
    default: return [publicJwk(published), publicJwk(publishedEc)].concat(fapi2 ? [publicJwk(publishedPs())] : []);
  }
}

async function idToken(nonce, sid) {
  const claims = { iss: issuer, aud: clientId, sub: 'mallory', name: 'Mallory', nonce, sid, iat: now(), exp: now() + 300 };
  const options = fapi2 ? { alg: 'PS256', key: publishedPs() } : {};
  idTokensIssued += 1;
  switch (scenario) {
    case 'es256': options.alg = 'ES256'; options.key = publishedEc; break;
    case 'kid-absent-single': case 'kid-absent-multiple': options.kid = false; break;
    // A new key (a new kid) just before signing: the RP must refetch the JWKS.
    case 'rotate-before-signing': published = rsaKey(`rotated-${randomBytes(4).toString('hex')}`); break;
    // The first ID token with the key discovery saw, then a new one for every later token.
    case 'rotate-after-first':
      if (idTokensIssued > 1) published = rsaKey(`rotated-${randomBytes(4).toString('hex')}`);
      break;
    case 'bad-signature': options.key = impostor(); break;
    case 'alg-none': options.alg = 'none'; break;
    case 'alg-hs256': options.alg = 'HS256'; break;
    case 'unknown-kid': options.key = unpublished(); break;
    case 'wrong-iss': claims.iss = 'https://evil.example'; break;
    // FAPI 2.0: RS256 by a published key, where the client expects PS256.
    case 'alternate-alg': options.alg = 'RS256'; options.key = published; break;
    case 'no-iss': delete claims.iss; break;
    case 'no-aud': delete claims.aud; break;
    case 'no-exp': delete claims.exp; break;
    case 'aud-array': claims.aud = [clientId]; break;
    case 'other-sub': claims.sub = 'eve'; break;
    // A session too large for one cookie: the RP splits it into chunks.
    case 'big-claims': claims.bio = 'b'.repeat(6000); break;
    case 'wrong-aud': claims.aud = 'another-client'; break;
    case 'multi-aud-no-azp': claims.aud = [clientId, 'another-client']; break;
    case 'multi-aud-wrong-azp': claims.aud = [clientId, 'another-client']; claims.azp = 'another-client'; break;
    case 'multi-aud-with-azp': claims.aud = [clientId, 'another-client']; claims.azp = clientId; break;
    case 'expired': claims.iat = now() - 7200; claims.exp = now() - 3600; break;
    case 'expired-within-skew': claims.exp = now() - 20; break;
    case 'iat-future': claims.iat = now() + 3600; claims.exp = now() + 7200; break;
    case 'no-iat': delete claims.iat; break;
    case 'wrong-nonce': claims.nonce = 'not-the-nonce'; break;
    case 'no-nonce': delete claims.nonce; break;
    case 'no-sub': delete claims.sub; break;
    case 'fresh-auth-time': claims.auth_time = now() - 5; break;
    case 'acr-mfa': claims.acr = 'urn:mfa'; break;
    case 'acr-pwd': claims.acr = 'urn:pwd'; break;
    case 'org-acme-mfa': claims.org_id = 'org_acme'; claims.acr = 'urn:mfa'; break;
    case 'org-acme-pwd': claims.org_id = 'org_acme'; claims.acr = 'urn:pwd'; break;
    case 'org-globex-mfa': claims.org_id = 'org_globex'; claims.acr = 'urn:mfa'; break;
    case 'stale-auth-time': claims.auth_time = now() - 3600; break;
    default: break;
  }
  return sign(claims, options);
}

function jwksPath() {
  return scenario === 'jwks-random-path' ? `/jwks-${jwksSuffix}` : '/jwks';
}

// A back-channel logout token for the last session, spoiled as `variant` says (the modules of
// the OpenID Foundation's Back-Channel Logout RP plan).
async function logoutToken(variant) {
  const claims = {
    iss: issuer,
    aud: clientId,
    iat: now(),
    exp: now() + 120,
    jti: randomBytes(12).toString('hex'),
    sub: 'mallory',
    sid: lastSid,
    events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
  };
  const options = { header: { typ: 'logout+jwt' } };
  switch (variant) {
    case 'valid': break;
    case 'alg-none': options.alg = 'none'; break;
    case 'no-event': delete claims.events; break;
    case 'with-nonce': claims.nonce = randomBytes(8).toString('hex'); break;
    case 'wrong-alg': options.alg = 'ES256'; options.key = publishedEc; break;
    case 'wrong-aud': claims.aud = `${clientId}INVALID`; break;
    case 'wrong-event': claims.events = { 'http://schemas.openid.net/event/foobar': {} }; break;
    case 'wrong-iss': claims.iss = `${issuer}INVALID`; break;
    default: throw new Error(`unknown logout token variant ${variant}`);
  }
  return sign(claims, options);
}

function send(res, status, body, type = 'application/json') {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
}

// Checks the DPoP proof of a request to `path` (RFC 9449, 4.3), for `accessToken` when the
// request carries one: its answer, when it refuses the proof or asks for a nonce; else null,
// with `req.dpopJkt` set to the proof key's thumbprint. A request without a proof: null.
async function checkDpop(req, res, path, accessToken, asResource) {
  const proof = req.headers.dpop;
  if (!proof) return null;
  const seen = dpopSeen[path] || (dpopSeen[path] = { count: 0, nonced: 0, jkt: null });
  seen.count += 1;
  const refuse = (error, description, nonce) => {
    const headers = { 'content-type': 'application/json', 'cache-control': 'no-store' };
    if (nonce) headers['dpop-nonce'] = dpopNonce;
    if (error === 'use_dpop_nonce') nonceChallenges[path] = (nonceChallenges[path] || 0) + 1;
    if (asResource) {
      // 'rs-scheme-case': the challenge's scheme in another case (RFC 9110: case-insensitive).
      const scheme = scenario === 'rs-scheme-case' ? 'dpop' : 'DPoP';
      headers['www-authenticate'] = `${scheme} error="${error}", algs="ES256"`;
      res.writeHead(401, headers);
    } else {
      res.writeHead(400, headers);
    }
    res.end(JSON.stringify({ error, error_description: description }));
    return true;
  };
  let payload;
  let protectedHeader;
  try {
    ({ payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] }));
  } catch (err) {
    return refuse('invalid_dpop_proof', `bad proof: ${err.message}`);
  }
  if (payload.htm !== req.method || payload.htu !== `${issuer}${path}`) return refuse('invalid_dpop_proof', 'htm/htu');
  if (typeof payload.jti !== 'string' || typeof payload.iat !== 'number') return refuse('invalid_dpop_proof', 'jti/iat');
  if (accessToken !== undefined) {
    const ath = createHash('sha256').update(accessToken).digest('base64url');
    if (payload.ath !== ath) return refuse('invalid_dpop_proof', 'ath');
  }
  const nonceRequired = fapi2 && scenario !== 'no-dpop-nonce';
  if (payload.nonce !== undefined) seen.nonced += 1;
  if (nonceRequired && payload.nonce !== dpopNonce) return refuse('use_dpop_nonce', 'a nonce is required', true);
  seen.jkt = await calculateJwkThumbprint(protectedHeader.jwk);
  req.dpopJkt = seen.jkt;
  return null;
}

// The token type of an answer to a request with a proof (or without), by the scenario.
function tokenType(req) {
  if (!req.dpopJkt || scenario === 'token-type-bearer') return 'Bearer';
  return scenario === 'token-type-inverted' ? 'dpOP' : 'DPoP';
}

async function token(req, res) {
  const form = new URLSearchParams(await readBody(req));
  const assertion = form.get('client_assertion');
  if (assertion) tokenAssertionJtis.push(JSON.parse(Buffer.from(assertion.split('.')[1], 'base64url')).jti);
  if (scenario === 'nonce-rotates' && !nonceRotated) {
    nonceRotated = true;
    dpopNonce = `nonce-${randomBytes(12).toString('base64url')}`;
  }
  if (await checkDpop(req, res, '/token')) return undefined;
  const grant = form.get('grant_type');
  const basic = (req.headers.authorization || '').startsWith('Basic ');
  tokenAuth = basic ? 'client_secret_basic'
    : form.has('client_assertion') ? 'private_key_jwt'
      : form.has('client_secret') ? 'client_secret_post' : 'none';
  if (grant === 'refresh_token') {
    refreshGrants += 1;
    if (scenario === 'refresh-500') return send(res, 500, 'internal error', 'text/plain');
    if (scenario === 'strict-rotation') {
      // Rotation where only the newest refresh token works and a used one is refused (without
      // revoking the newest), the refusal coming after the winner's answer.
      if (form.get('refresh_token') !== latestRefresh) {
        return setTimeout(() => send(res, 400, { error: 'invalid_grant', error_description: 'used' }), 600);
      }
      latestRefresh = `rt-${randomBytes(8).toString('hex')}`;
      const answer = { access_token: `at-${randomBytes(8).toString('hex')}`, token_type: tokenType(req), expires_in: 3600 };
      answer.refresh_token = latestRefresh;
      answer.id_token = await idToken(undefined);
      return setTimeout(() => send(res, 200, answer), 100);
    }
    const answer = { access_token: `at-${randomBytes(8).toString('hex')}`, token_type: tokenType(req), expires_in: 3600 };
    if (scenario !== 'refresh-without-id-token') answer.id_token = await idToken(undefined);
    return send(res, 200, answer);
  }
  const entry = codes.get(form.get('code'));
  codes.delete(form.get('code'));
  if (!entry) return send(res, 400, { error: 'invalid_grant' });
  switch (scenario) {
    case 'token-slow': return setTimeout(() => send(res, 503, { error: 'too late' }), 15000);
    case 'token-500': return send(res, 500, 'internal error', 'text/plain');
    case 'token-not-json': return send(res, 200, '<html>not a token</html>', 'text/html');
    case 'token-invalid-grant': return send(res, 400, { error: 'invalid_grant', error_description: 'code expired' });
    case 'token-no-id-token':
      return send(res, 200, { access_token: 'at', token_type: 'Bearer', expires_in: 3600 });
    default:
      return send(res, 200, {
        access_token: `at-${randomBytes(8).toString('hex')}`,
        token_type: tokenType(req),
        // 'short-access': an access token already within the RP's refresh buffer;
        // 'no-expires-in': none said.
        expires_in: scenario === 'no-expires-in' ? undefined : scenario === 'short-access' ? 30 : 3600,
        refresh_token: 'rt-hostile',
        id_token: await idToken(entry.nonce, entry.sid),
      });
  }
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/.well-known/openid-configuration') {
      return send(res, 200, {
        // 'discovery-issuer-mismatch': another issuer than the URL the document came from.
        issuer: scenario === 'discovery-issuer-mismatch' ? `${issuer}/INVALID` : issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}${jwksPath()}`,
        end_session_endpoint: `${issuer}/session/end`,
        pushed_authorization_request_endpoint: `${issuer}/par`,
        userinfo_endpoint: `${issuer}/userinfo`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256', 'ES256', 'PS256'],
        response_modes_supported: scenario === 'form-post-only' ? ['form_post'] : ['query', 'form_post'],
        token_endpoint_auth_methods_supported: fapi2 ? ['private_key_jwt']
          : ['client_secret_basic', 'client_secret_post'],
        code_challenge_methods_supported: ['S256'],
        ...(fapi2 ? {
          dpop_signing_alg_values_supported: ['ES256'],
          // Left out in 'authz-iss-missing': FAPI 2.0 requires `iss` whatever is announced.
          authorization_response_iss_parameter_supported: scenario !== 'authz-iss-missing',
          require_pushed_authorization_requests: true,
        } : {}),
      });
    }
    if (url.pathname === jwksPath()) {
      jwksFetches += 1;
      return send(res, 200, { keys: jwks() });
    }
    if (url.pathname === '/authorize') {
      authorizeCalls += 1;
      lastAuthorize = Object.fromEntries(url.searchParams);
      // A pushed request: its parameters are those pushed under the request_uri.
      const pushedParams = pushed.get(url.searchParams.get('request_uri'));
      if (pushedParams) {
        pushed.delete(url.searchParams.get('request_uri'));
        for (const [k, v] of Object.entries(pushedParams)) url.searchParams.set(k, v);
      }
      const code = randomBytes(16).toString('hex');
      lastSid = `sid-${randomBytes(8).toString('hex')}`;
      codes.set(code, { nonce: url.searchParams.get('nonce'), sid: lastSid });
      const answer = scenario === 'authorize-login-required'
        ? { error: 'login_required', state: url.searchParams.get('state'), iss: issuer }
        : { code, state: url.searchParams.get('state'), iss: issuer };
      // RFC 9207's `iss` in the authorization response: another issuer's, or none.
      if (scenario === 'authz-iss-wrong') answer.iss = `${issuer}/INVALID`;
      if (scenario === 'authz-iss-missing') delete answer.iss;
      if (url.searchParams.get('response_mode') === 'form_post') {
        // The page a provider answers in form_post mode: a form the browser posts at once.
        const escape = (v) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
        const fields = Object.entries(answer)
          .map(([k, v]) => `<input type="hidden" name="${escape(k)}" value="${escape(v)}">`).join('');
        const target = escape(url.searchParams.get('redirect_uri'));
        return send(res, 200, `<!doctype html><html><body onload="document.forms[0].submit()">
<form method="post" action="${target}">${fields}<noscript><button>Continue</button></noscript></form></body></html>`, 'text/html');
      }
      const back = new URL(url.searchParams.get('redirect_uri'));
      for (const [k, v] of Object.entries(answer)) back.searchParams.set(k, v);
      res.writeHead(302, { location: back.href });
      return res.end();
    }
    if (url.pathname === '/token' && req.method === 'POST') return token(req, res);
    if (url.pathname === '/par' && req.method === 'POST') {
      const body = await readBody(req);
      if (await checkDpop(req, res, '/par')) return undefined;
      parParams = Object.fromEntries(new URLSearchParams(body));
      delete parParams.client_assertion;
      switch (scenario) {
        case 'par-400': return send(res, 400, { error: 'invalid_request', error_description: 'no such redirect' });
        case 'par-500': return send(res, 500, 'internal error', 'text/plain');
        case 'par-garbage': return send(res, 201, '<html>not json</html>', 'text/html');
        case 'par-no-uri': return send(res, 201, { expires_in: 60 });
        default: {
          const requestUri = `urn:ietf:params:oauth:request_uri:${randomBytes(12).toString('hex')}`;
          pushed.set(requestUri, parParams);
          return send(res, 201, { request_uri: requestUri, expires_in: 60 });
        }
      }
    }
    if (url.pathname === '/userinfo') {
      userinfoCalls += 1;
      const body = req.method === 'POST' ? new URLSearchParams(await readBody(req)) : new URLSearchParams();
      const authorization = req.headers.authorization || '';
      userinfoAuth = authorization.startsWith('Bearer ') ? 'header'
        : /^dpop /i.test(authorization) ? 'dpop'
          : body.has('access_token') ? 'body' : url.searchParams.has('access_token') ? 'query' : 'none';
      if (userinfoAuth === 'dpop' && await checkDpop(req, res, '/userinfo', authorization.slice(5), true)) return undefined;
      switch (scenario) {
        case 'userinfo-other-sub': return send(res, 200, { sub: 'eve', name: 'Eve' });
        case 'userinfo-500': return send(res, 500, 'internal error', 'text/plain');
        // A claim the ID token lacks, and one it has (the ID token's wins).
        default: return send(res, 200, { sub: 'mallory', name: 'Userinfo Name', favourite_color: 'green' });
      }
    }
    if (url.pathname === '/session/end') {
      lastEndSession = Object.fromEntries(url.searchParams);
      const to = url.searchParams.get('post_logout_redirect_uri');
      if (!to) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        return res.end('logged out');
      }
      const back = new URL(to);
      const state = url.searchParams.get('state');
      // 'logout-other-state': the state comes back changed; 'logout-no-state': not at all.
      if (state !== null && scenario === 'logout-other-state') back.searchParams.set('state', `${state}_INVALID`);
      else if (state !== null && scenario !== 'logout-no-state') back.searchParams.set('state', state);
      res.writeHead(302, { location: back.href });
      return res.end();
    }
    if (url.pathname === '/__test/backchannel' && req.method === 'POST') {
      const { variant, to } = JSON.parse(await readBody(req));
      const token = await logoutToken(variant);
      const answer = await fetch(to, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ logout_token: token }).toString(),
      });
      return send(res, 200, { status: answer.status, body: await answer.text() });
    }
    if (url.pathname === '/__scenario' && req.method === 'POST') {
      scenario = JSON.parse(await readBody(req)).name;
      return send(res, 200, { scenario });
    }
    if (url.pathname === '/__stats' || url.pathname === '/__test/stats') {
      return send(res, 200, {
        refresh_grants: refreshGrants,
        jwks_fetches: jwksFetches,
        userinfo_calls: userinfoCalls,
        authorize_calls: authorizeCalls,
        authorize: lastAuthorize,
        token_auth: tokenAuth,
        userinfo_auth: userinfoAuth,
        dpop: dpopSeen,
        use_dpop_nonce: nonceChallenges,
        par: parParams,
        token_assertion_jtis: tokenAssertionJtis,
        end_session: lastEndSession,
        sid: lastSid,
      });
    }
    return send(res, 404, { error: 'not_found' });
  } catch (err) {
    console.error(err);
    return send(res, 500, { error: 'server_error' });
  }
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  console.log(`hostile provider listening on ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
// As provider.mjs: exit when the process that started it is gone (its pipe closes).
if (process.env.EXIT_WITH_STDIN === '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
