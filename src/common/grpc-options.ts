import type * as grpc from '@grpc/grpc-js';

/**
 * Channel and server options every grpc-js endpoint of svidscope uses. Channelz (grpc-js's
 * introspection service, which svidscope does not serve) is off: with it on, grpc-js registers
 * every connection and call in its registry and keeps per-session trackers and trace lines,
 * memory and work per agent connection that a fleet of 10,000 agents pays for nothing.
 */
export const GRPC_BASE_OPTIONS = { 'grpc.enable_channelz': 0 } as const;

/** The one protocol svidscope's TLS servers speak (gRPC over HTTP/2), or none: the handshake fails with no_application_protocol. */
const selectH2 = ({ protocols }: { protocols: string[] }): string | undefined => (protocols.includes('h2') ? 'h2' : undefined);

/**
 * TLS server credentials that pick HTTP/2 with an ALPN callback instead of a protocol list.
 *
 * With a list, Node's TLS server copies it into a new Buffer for every connection and keeps that
 * copy for the connection's life. The copy is a few bytes from Node's shared 8 KiB Buffer pool, so
 * each long-lived connection pins a whole pool slab that other, short-lived Buffers were cut from:
 * a heap snapshot of a server holding 2,000 agent connections found 889 such slabs, 7 MiB. With a
 * callback (Node's `ALPNCallback`; HTTP/2 then sets no list of its own) nothing is copied. Clients
 * see the same: `h2` is chosen when offered, and a client offering only other protocols is refused.
 */
export function withH2AlpnCallback(credentials: grpc.ServerCredentials): grpc.ServerCredentials {
  const options = credentials._getConstructorOptions();
  if (options === null) return credentials; // plaintext: no TLS, no ALPN
  const { ALPNProtocols: _list, ...rest } = options;
  const withCallback = { ...rest, ALPNCallback: selectH2 };
  credentials._getConstructorOptions = () => withCallback;
  return credentials;
}
