import * as grpc from '@grpc/grpc-js';
import { SvidscopeError } from '../../common/errors/catalog.js';
import { codeOfServiceError } from '../../common/errors/grpc.js';
import { userInfo } from 'node:os';
import { ADMIN_CALLER_METADATA, serverServices } from './services.js';

/**
 * The client of the server's admin socket, used by the CLI, the exporter and tests. Errors come
 * back as SvidscopeErrors carrying the server's own code (from the error-code trailer).
 */
export interface AdminClient {
  call<Res>(method: string, request: object): Promise<Res>;
  close(): void;
}

/** A client of the server's admin socket whose errors come back as SvidscopeErrors for the CLI printer. */
export function connectAdmin(socket: string): AdminClient {
  const Admin = serverServices().adminClient;
  const client = new Admin(`unix://${socket}`, grpc.credentials.createInsecure());
  const caller = callerMetadata();
  return {
    call<Res>(method: string, request: object): Promise<Res> {
      return new Promise((resolve, reject) => {
        const fn = (client as unknown as Record<string, (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Res) => void) => void>)[method];
        fn.call(client, request, caller.clone(), { deadline: Date.now() + 15_000 }, (err, res) => {
          if (!err) return resolve(res);
          const code = codeOfServiceError(err);
          const message = err.code === grpc.status.UNAVAILABLE
            ? `cannot reach the server admin socket ${socket}: is the server running? (${err.details})`
            : err.details || err.message;
          // Keep the server's own message: for InvalidArgument it names the broken rule.
          reject(new SvidscopeError(code, message));
        });
      });
    },
    close: () => client.close(),
  };
}


/** Who this process is, for the server's audit lines (see ADMIN_CALLER_METADATA). */
function callerMetadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(ADMIN_CALLER_METADATA.pid, String(process.pid));
  if (typeof process.getuid === 'function') md.set(ADMIN_CALLER_METADATA.uid, String(process.getuid()));
  try {
    md.set(ADMIN_CALLER_METADATA.user, userInfo().username);
  } catch {
    // No passwd entry for this uid (a container): the uid says enough.
  }
  return md;
}
