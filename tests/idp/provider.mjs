// The OpenID Provider that auth-layer's end-to-end tests and demo run against: panva's
// oidc-provider (OpenID Certified), configured from the environment and bound to loopback only.
//
//   PORT           port to listen on (default 3001); the issuer is http://127.0.0.1:PORT
//   CLIENTS        JSON array of client metadata (redirect_uris, post_logout_redirect_uris, ...)
//   SIGNING_KID    when set, sign with a fresh RSA key of this `kid` (tests of key rotation)
//   NO_END_SESSION when 1, announce no end_session_endpoint (tests of local-only logout)
//
// Accounts: any login name is accepted with any password. The account's `name` is the login
// capitalised, its email is login@example.test; a login starting with "big" carries a 6 KB `bio`
// claim, so that the relying party's session outgrows one cookie.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 3001);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.CLIENTS || '[]');

function claimsFor(id) {
  const claims = {
    sub: id,
    name: id.charAt(0).toUpperCase() + id.slice(1),
    nickname: id,
    email: `${id}@example.test`,
    email_verified: true,
  };
  if (id.startsWith('big')) {
    claims.bio = 'x'.repeat(6000);
  }
  return claims;
}

function signingKey(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
}

const configuration = {
  clients,
  ...(process.env.SIGNING_KID ? { jwks: { keys: [signingKey(process.env.SIGNING_KID)] } } : {}),
  cookies: { keys: ['auth-layer-test-provider-cookie-key'] },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'nickname', 'bio'],
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: process.env.NO_END_SESSION !== '1' },
    backchannelLogout: { enabled: true },
  },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  async findAccount(ctx, id) {
    return { accountId: id, claims: async () => claimsFor(id) };
  },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('provider server_error', err));
const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
