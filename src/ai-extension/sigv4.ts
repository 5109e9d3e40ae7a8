import { createHash, createHmac } from 'node:crypto';

/**
 * AWS Signature Version 4 (docs.aws.amazon.com, "Create a signed AWS API request"), for the
 * requests the extension sends to Bedrock: each attempt is signed afresh, for its own body, time
 * and member.
 */

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface SignableRequest {
  method: string;
  /** Host the request is sent with (the Host header, part of the signature). */
  host: string;
  /** Path and query exactly as sent, e.g. "/model/amazon.nova-lite-v1%3A0/converse". */
  path: string;
  /** Other headers to sign (lower-case names); host and x-amz-date are added. */
  headers?: Readonly<Record<string, string>>;
  body: Uint8Array;
  region: string;
  service: string;
  now: Date;
}

/** The headers that carry the signature (lower-case names). */
export interface SignedHeaders {
  authorization: string;
  'x-amz-date': string;
  'x-amz-security-token'?: string;
}

const sha256Hex = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();

/** RFC 3986 percent-encoding: only A-Z a-z 0-9 - _ . ~ stay as they are. */
function uriEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * Every service but S3 encodes each path segment once more for the canonical request: a model
 * ID's ":" is sent as %3A and signed as %253A, as AWS's own SDKs do.
 */
function canonicalUri(path: string): string {
  if (path === '' || path === '/') return '/';
  return path.split('/').map(uriEncode).join('/');
}

function canonicalQuery(query: string): string {
  if (query === '') return '';
  const decode = (s: string): string => decodeURIComponent(s.replace(/\+/g, ' '));
  return query
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=');
      const key = eq < 0 ? p : p.slice(0, eq);
      const value = eq < 0 ? '' : p.slice(eq + 1);
      return [uriEncode(decode(key)), uriEncode(decode(value))] as const;
    })
    .sort(([ak, av], [bk, bv]) => (ak === bk ? (av < bv ? -1 : av > bv ? 1 : 0) : ak < bk ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

/** 20150830T123600Z, and its date part 20150830. */
export function amzDate(now: Date): { stamp: string; day: string } {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  return { stamp, day: stamp.slice(0, 8) };
}

export function signingKey(secretAccessKey: string, day: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, day), region), service), 'aws4_request');
}

/** The canonical request and string to sign (exported for tests; never logged: it holds no secret but is bulky). */
export function stringToSign(req: SignableRequest, credentials: AwsCredentials): { canonicalRequest: string; stringToSign: string; signedHeaders: string; scope: string; stamp: string } {
  const { stamp, day } = amzDate(req.now);
  const headers = new Map<string, string>();
  for (const [name, value] of Object.entries(req.headers ?? {})) headers.set(name.toLowerCase(), value);
  headers.set('host', req.host);
  headers.set('x-amz-date', stamp);
  if (credentials.sessionToken !== undefined) headers.set('x-amz-security-token', credentials.sessionToken);
  const names = [...headers.keys()].sort();
  const canonicalHeaders = names.map((n) => `${n}:${(headers.get(n) ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const signedHeaders = names.join(';');
  const q = req.path.indexOf('?');
  const path = q < 0 ? req.path : req.path.slice(0, q);
  const query = q < 0 ? '' : req.path.slice(q + 1);
  const canonicalRequest = [req.method.toUpperCase(), canonicalUri(path), canonicalQuery(query), canonicalHeaders, signedHeaders, sha256Hex(req.body)].join('\n');
  const scope = `${day}/${req.region}/${req.service}/aws4_request`;
  return { canonicalRequest, stringToSign: ['AWS4-HMAC-SHA256', stamp, scope, sha256Hex(canonicalRequest)].join('\n'), signedHeaders, scope, stamp };
}

/** The signature headers for one request. */
export function signRequest(req: SignableRequest, credentials: AwsCredentials): SignedHeaders {
  const s = stringToSign(req, credentials);
  const key = signingKey(credentials.secretAccessKey, s.stamp.slice(0, 8), req.region, req.service);
  const signature = createHmac('sha256', key).update(s.stringToSign).digest('hex');
  const out: SignedHeaders = {
    authorization: `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${s.scope}, SignedHeaders=${s.signedHeaders}, Signature=${signature}`,
    'x-amz-date': s.stamp,
  };
  if (credentials.sessionToken !== undefined) out['x-amz-security-token'] = credentials.sessionToken;
  return out;
}
