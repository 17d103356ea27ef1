// A relying party built on panva's certified openid-client, run against a live identity
// server by tests/e2e/test_oidc_interop.py. Everything protocol-side is the library's own
// code; only signInThroughHostedPages() is ours, standing in for a person at a browser.
//
// Input (environment): RP_ISSUER, RP_CLIENT_ID, RP_CLIENT_SECRET, RP_REDIRECT_URI,
// RP_EMAIL, RP_PASSWORD. Output: a JSON summary of what was observed on stdout; on any
// failure the error on stderr and a non-zero exit.
import { createHash } from "node:crypto";
import { inspect } from "node:util";
import * as client from "openid-client";

const MAX_HOPS = 10;
// Sent as max_age and checked against the ID token's auth_time by the library.
const MAX_AGE = 300;

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const issuer = new URL(required("RP_ISSUER"));
const clientId = required("RP_CLIENT_ID");
const clientSecret = required("RP_CLIENT_SECRET");
const redirectUri = required("RP_REDIRECT_URI");
const email = required("RP_EMAIL");
const password = required("RP_PASSWORD");

// ---- The page-driving glue: a cookie jar, redirects by hand, and the two hosted forms. ----

const cookies = new Map();

function keepCookies(response) {
  for (const header of response.headers.getSetCookie()) {
    const [pair] = header.split(";");
    const at = pair.indexOf("=");
    const name = pair.slice(0, at).trim();
    const value = pair.slice(at + 1).trim();
    // An expired or emptied cookie is the server deleting it.
    if (value === "" || /;\s*max-age=0\b/i.test(header)) cookies.delete(name);
    else cookies.set(name, value);
  }
}

async function request(url, init = {}) {
  const headers = new Headers(init.headers);
  if (cookies.size) {
    headers.set("cookie", [...cookies].map(([name, value]) => `${name}=${value}`).join("; "));
  }
  const response = await fetch(url, { ...init, headers, redirect: "manual" });
  keepCookies(response);
  return response;
}

function unescapeHtml(text) {
  return text
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

function attributes(tag) {
  const found = {};
  for (const match of tag.matchAll(/([a-zA-Z_:-]+)\s*=\s*"([^"]*)"/g)) {
    found[match[1].toLowerCase()] = unescapeHtml(match[2]);
  }
  return found;
}

/** The page's single form: where it posts and its named inputs, hidden ones included. */
function formOf(html, pageUrl) {
  const forms = [...html.matchAll(/<form\b[^>]*>[\s\S]*?<\/form>/gi)];
  if (forms.length !== 1) throw new Error(`expected one form on ${pageUrl}, found ${forms.length}`);
  const body = forms[0][0];
  const form = attributes(body.match(/<form\b[^>]*>/i)[0]);
  if ((form.method ?? "get").toLowerCase() !== "post") {
    throw new Error(`form on ${pageUrl} is not POST`);
  }
  const fields = new URLSearchParams();
  for (const [tag] of body.matchAll(/<input\b[^>]*>/gi)) {
    const input = attributes(tag);
    if (input.name) fields.set(input.name, input.value ?? "");
  }
  const buttons = [...body.matchAll(/<button\b[^>]*>/gi)].map(([tag]) => attributes(tag));
  return { action: new URL(form.action ?? pageUrl, pageUrl), fields, buttons };
}

/**
 * Follows the authorization request through the hosted pages as a browser would, filling in
 * the login form and allowing consent, and returns the URL the server finally sends the
 * browser to: the client's redirect URI with the authorization response. It is not followed.
 */
async function signInThroughHostedPages(authorizationUrl, pagesSeen) {
  let response = await request(authorizationUrl);
  let url = authorizationUrl;
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    if ([301, 302, 303, 307, 308].includes(response.status)) {
      const location = new URL(response.headers.get("location"), url);
      if (`${location.origin}${location.pathname}` === redirectUri) return location;
      url = location;
      response = await request(url);
      continue;
    }
    const html = await response.text();
    if (response.status !== 200) {
      throw new Error(`${url.pathname} answered ${response.status}: ${html.slice(0, 500)}`);
    }
    pagesSeen.push(url.pathname);
    const form = formOf(html, url);
    if (form.fields.has("password")) {
      form.fields.set("email", email);
      form.fields.set("password", password);
    } else if (form.buttons.some(({ name, value }) => name === "decision" && value === "allow")) {
      form.fields.set("decision", "allow");
    } else {
      throw new Error(`unexpected page ${url.pathname}: ${html.slice(0, 500)}`);
    }
    url = form.action;
    response = await request(url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: form.fields.toString(),
    });
  }
  throw new Error(`no redirect to ${redirectUri} after ${MAX_HOPS} hops (last at ${url})`);
}

// ---- The relying party proper: every protocol step below is openid-client. ----

/** What a refused call looked like: the library's error class and the OAuth error code. */
async function refusal(promise) {
  try {
    await promise;
  } catch (error) {
    return {
      refused: true,
      class: error.constructor.name,
      code: error.code ?? null,
      status: error.status ?? error.response?.status ?? null,
      // A token endpoint error is in the body; a userinfo one in the WWW-Authenticate challenge.
      error: error.error ?? error.cause?.[0]?.parameters?.error ?? null,
    };
  }
  return { refused: false };
}

function introspected(response) {
  const { active, client_id, sub, scope, token_type, iss, aud, exp } = response;
  return { active, client_id, sub, scope, token_type, iss, aud, exp };
}

async function main() {
  const config = await client.discovery(
    issuer,
    clientId,
    { redirect_uris: [redirectUri] },
    client.ClientSecretBasic(clientSecret),
    // The test server listens on plain http on the loopback interface.
    { execute: [client.allowInsecureRequests] },
  );
  const metadata = config.serverMetadata();

  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorizationUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: "openid email profile",
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: "S256",
    state,
    nonce,
    max_age: String(MAX_AGE),
  });

  const pagesSeen = [];
  const callback = await signInThroughHostedPages(authorizationUrl, pagesSeen);

  // Checks state, the RFC 9207 iss parameter and PKCE, then validates the ID token: its
  // signature through the JWKS, iss, aud, exp, iat, nonce, and auth_time against max_age.
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: codeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    maxAge: MAX_AGE,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const idTokenHeader = JSON.parse(Buffer.from(tokens.id_token.split(".")[0], "base64url"));
  // The library leaves at_hash alone in the code flow (OIDC Core §3.1.3.6 makes it optional
  // there), so the RP checks it itself: the left half of the SHA-256 of the access token.
  const accessTokenDigest = createHash("sha256").update(tokens.access_token).digest();
  const atHash = accessTokenDigest.subarray(0, 16).toString("base64url");

  // Checks that the userinfo sub is the ID token's.
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);

  // An ID token in the refresh answer is validated too (signature, iss, aud, exp); OIDC Core
  // §12.2's rules tying it to the first one (same sub, same auth_time) the test checks.
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);

  const beforeRevocation = await client.tokenIntrospection(config, refreshed.access_token);
  await client.tokenRevocation(config, refreshed.access_token, { token_type_hint: "access_token" });
  const afterRevocation = await client.tokenIntrospection(config, refreshed.access_token);
  const userinfoAfterRevocation = await refusal(
    client.fetchUserInfo(config, refreshed.access_token, claims.sub),
  );

  const refreshBeforeRevocation = await client.tokenIntrospection(config, refreshed.refresh_token);
  await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: "refresh_token" });
  const refreshAfterRevocation = await client.tokenIntrospection(config, refreshed.refresh_token);
  const refreshWithRevoked = await refusal(
    client.refreshTokenGrant(config, refreshed.refresh_token),
  );

  return {
    discovery: {
      issuer: metadata.issuer,
      code_challenge_methods_supported: metadata.code_challenge_methods_supported,
      authorization_response_iss_parameter_supported:
        metadata.authorization_response_iss_parameter_supported,
    },
    pages: pagesSeen,
    authorization_response: {
      redirect_uri: `${callback.origin}${callback.pathname}`,
      iss: callback.searchParams.get("iss"),
      state_matches: callback.searchParams.get("state") === state,
    },
    token: {
      token_type: tokens.token_type,
      expires_in: tokens.expiresIn(),
      scope: tokens.scope,
      has_refresh_token: typeof tokens.refresh_token === "string",
    },
    id_token: {
      header: idTokenHeader,
      claims,
      expected_nonce: nonce,
      at_hash_matches: claims.at_hash === atHash,
    },
    userinfo,
    refresh: {
      token_type: refreshed.token_type,
      new_access_token: refreshed.access_token !== tokens.access_token,
      new_refresh_token:
        typeof refreshed.refresh_token === "string" &&
        refreshed.refresh_token !== tokens.refresh_token,
      id_token_claims: refreshed.id_token ? refreshed.claims() : null,
    },
    introspection: {
      access_token_before_revocation: introspected(beforeRevocation),
      access_token_after_revocation: introspected(afterRevocation),
      refresh_token_before_revocation: introspected(refreshBeforeRevocation),
      refresh_token_after_revocation: introspected(refreshAfterRevocation),
    },
    userinfo_with_revoked_access_token: userinfoAfterRevocation,
    refresh_with_revoked_refresh_token: refreshWithRevoked,
  };
}

try {
  process.stdout.write(JSON.stringify(await main(), null, 2) + "\n");
} catch (error) {
  // inspect() shows the whole cause chain, where the library names the claim or parameter
  // it rejected and the server's answer.
  process.stderr.write(`interop failure: ${inspect(error, { depth: 6 })}\n`);
  process.exitCode = 1;
}
