/**
 * Channel and server options every grpc-js endpoint of svidscope uses. Channelz (grpc-js's
 * introspection service, which svidscope does not serve) is off: with it on, grpc-js registers
 * every connection and call in its registry and keeps per-session trackers and trace lines,
 * memory and work per agent connection that a fleet of 10,000 agents pays for nothing.
 */
export const GRPC_BASE_OPTIONS = { 'grpc.enable_channelz': 0 } as const;
