/**
 * The standard Workload API service (`proto/workload.proto`, no package: the service is
 * `SpiffeWorkloadAPI`) as grpc-js sees it, plus the wire shapes proto-loader produces. This is the
 * only place the proto is loaded: the client, the agent's server, the bare client script of the
 * storm fault and the benchmark, and the test fakes all take it from here so they agree on options.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The security header every request must carry (SPIFFE Workload Endpoint §5: SSRF hardening). */
export const SECURITY_HEADER = 'workload.spiffe.io';
export const SECURITY_HEADER_VALUE = 'true';

const protoFile = path.join(path.dirname(fileURLToPath(import.meta.url)), 'proto', 'workload.proto');

// keepCase: field names as in the standard; defaults: absent fields read as '' / [] / {} rather
// than undefined, which is exactly the standard's "default value means cleared" semantics.
// enums and oneofs only shape decoded Struct values (ValidateJWTSVID's claims, read by clients);
// a server decodes requests made of strings alone, and encoding ignores these options.
const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

let cached: grpc.ServiceClientConstructor | undefined;

/** The generated client constructor; its `.service` is the definition a server registers. */
export function workloadApiService(): grpc.ServiceClientConstructor {
  if (!cached) {
    const def = grpc.loadPackageDefinition(protoLoader.loadSync(protoFile, LOADER_OPTIONS)) as unknown as {
      SpiffeWorkloadAPI: grpc.ServiceClientConstructor;
    };
    cached = def.SpiffeWorkloadAPI;
  }
  return cached;
}

export interface X509SvidMessage {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}
export interface X509SvidResponseMessage {
  svids: X509SvidMessage[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}
export interface X509BundlesResponseMessage {
  crl: Buffer[];
  bundles: Record<string, Buffer>;
}
export interface JwtSvidRequestMessage {
  audience: string[];
  spiffe_id: string;
}
export interface JwtSvidMessage {
  spiffe_id: string;
  svid: string;
  hint: string;
}
export interface JwtSvidResponseMessage {
  svids: JwtSvidMessage[];
}
export interface JwtBundlesResponseMessage {
  bundles: Record<string, Buffer>;
}
export interface ValidateJwtSvidRequestMessage {
  audience: string;
  svid: string;
}
export interface ValidateJwtSvidResponseMessage {
  spiffe_id: string;
  claims: StructMessage | null;
}

/** `google.protobuf.Struct` as proto-loader presents it (oneofs: true sets `kind` on each Value). */
export interface StructMessage {
  fields: Record<string, ValueMessage>;
}
export interface ValueMessage {
  kind?: string;
  nullValue?: string | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: StructMessage | null;
  listValue?: { values: ValueMessage[] } | null;
}

/** Converts a Struct to plain JSON (the JWT claims of ValidateJWTSVID). */
export function structToJson(struct: StructMessage | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) out[key] = valueToJson(value);
  return out;
}

function valueToJson(v: ValueMessage | null | undefined): unknown {
  if (!v) return null;
  switch (v.kind) {
    case 'numberValue':
      return v.numberValue;
    case 'stringValue':
      return v.stringValue;
    case 'boolValue':
      return v.boolValue;
    case 'structValue':
      return structToJson(v.structValue);
    case 'listValue':
      return (v.listValue?.values ?? []).map(valueToJson);
    default:
      return null;
  }
}

/** Converts plain JSON to a Struct; non-JSON values (undefined, functions) become null as in JSON. */
export function jsonToStruct(obj: Readonly<Record<string, unknown>>): StructMessage {
  const fields: Record<string, ValueMessage> = {};
  for (const [key, value] of Object.entries(obj)) fields[key] = jsonToValue(value);
  return { fields };
}

function jsonToValue(x: unknown): ValueMessage {
  if (typeof x === 'number') return { numberValue: x };
  if (typeof x === 'string') return { stringValue: x };
  if (typeof x === 'boolean') return { boolValue: x };
  if (Array.isArray(x)) return { listValue: { values: x.map(jsonToValue) } };
  if (x !== null && typeof x === 'object') return { structValue: jsonToStruct(x as Record<string, unknown>) };
  return { nullValue: 'NULL_VALUE' };
}
