import path from 'node:path';
import { connectAdmin, type AdminClient } from '../../identity-plane/server-api/admin-client.js';

export { connectAdmin, type AdminClient };

/** Where `svidscope server run` puts its admin socket by default (relative to the working directory). */
export const DEFAULT_ADMIN_SOCKET = path.join('.svidscope', 'server', 'admin.sock');

export function adminSocketPath(flag: string | undefined): string {
  return path.resolve(flag ?? process.env.SVIDSCOPE_ADMIN_SOCKET ?? DEFAULT_ADMIN_SOCKET);
}

/** Runs one admin call and always closes the client. */
export async function withAdmin<T>(socketFlag: string | undefined, fn: (admin: AdminClient) => Promise<T>): Promise<T> {
  const admin = connectAdmin(adminSocketPath(socketFlag));
  try {
    return await fn(admin);
  } finally {
    admin.close();
  }
}
