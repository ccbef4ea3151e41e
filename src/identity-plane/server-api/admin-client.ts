import * as grpc from '@grpc/grpc-js';
import { SvidscopeError } from '../../common/errors/catalog.js';
import { codeOfServiceError } from '../../common/errors/grpc.js';
import { serverServices } from './services.js';

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
  return {
    call<Res>(method: string, request: object): Promise<Res> {
      return new Promise((resolve, reject) => {
        const fn = (client as unknown as Record<string, (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Res) => void) => void>)[method];
        fn.call(client, request, { deadline: Date.now() + 15_000 }, (err, res) => {
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

