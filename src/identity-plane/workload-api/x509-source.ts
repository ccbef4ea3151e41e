/**
 * An X509Source, go-spiffe style (`workloadapi/x509source.go`): it watches FetchX509SVID through
 * the retry table and always holds the latest X.509 context, so TLS code can ask for "the current
 * SVID" and "the bundle of that trust domain" without touching the Workload API itself.
 *
 * `createX509Source` resolves once the first update is in (a source without an SVID is useless);
 * `close()` is idempotent and afterwards every getter fails with "source is closed". On a failure
 * after the first update the last good context is kept: a workload keeps serving with its still
 * valid SVID while the agent restarts, which is what go-spiffe does.
 */
import { SvidscopeError } from '../../common/errors/catalog.js';
import type { X509Bundle, X509BundleSource } from '../spiffe/bundle/index.js';
import type { TrustDomain } from '../spiffe/id/index.js';
import type { X509Svid } from '../spiffe/x509svid/index.js';
import type { WorkloadApiClient } from './client.js';
import type { WorkloadX509Svid, X509Context } from './convert.js';
import type { WorkloadApiError } from './errors.js';
import { watchWithRetry, type RetryOptions } from './retry.js';

/** Something that holds the current X509-SVID (go-spiffe `x509svid.Source`). */
export interface X509SvidSource {
  getX509Svid(): X509Svid;
}

export interface X509Source extends X509SvidSource, X509BundleSource {
  /** The picked SVID (by default the first: the default identity). */
  getX509Svid(): WorkloadX509Svid;
  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined;
  getX509Context(): X509Context;
  /** Resolves at the next update; bursts coalesce (every waiter is released by one update). */
  waitUntilUpdated(signal?: AbortSignal): Promise<void>;
  /** Idempotent; resolves when the stream is gone. Does not close the client. */
  close(): Promise<void>;
  readonly closed: boolean;
}

export interface X509SourceOptions extends RetryOptions {
  /** Chooses the SVID getX509Svid returns (go-spiffe `WithDefaultX509SVIDPicker`). */
  readonly picker?: (svids: readonly WorkloadX509Svid[]) => WorkloadX509Svid;
  /** Sees every watch failure, including the ones that are retried. */
  readonly onError?: (err: WorkloadApiError) => void;
  /** Aborts the wait for the first update (the source is then closed). */
  readonly signal?: AbortSignal;
}

const closedError = () => new SvidscopeError('unavailable', 'x509source: source is closed');

export function createX509Source(client: WorkloadApiClient, opts: X509SourceOptions = {}): Promise<X509Source> {
  const picker = opts.picker ?? ((svids) => svids[0]);
  let context: X509Context | undefined;
  let closed = false;
  let waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  return new Promise<X509Source>((resolveSource, rejectSource) => {
    const handle = watchWithRetry(
      client.watchX509Context,
      (ctx) => {
        context = ctx;
        const released = waiters;
        waiters = [];
        for (const w of released) w.resolve();
        resolveSource(source);
      },
      (err) => opts.onError?.(err),
      opts,
    );

    const shutdown = async (): Promise<void> => {
      if (!closed) {
        closed = true;
        handle.close();
        for (const w of waiters) w.reject(closedError());
        waiters = [];
        opts.signal?.removeEventListener('abort', onAbort);
      }
      await handle.done;
    };

    // A stop before the first update (InvalidArgument, server-side Cancelled) leaves nothing to serve.
    void handle.done.then((err) => {
      if (context !== undefined || closed) return;
      void shutdown();
      rejectSource(err ?? new SvidscopeError('unavailable', 'x509source: watch stopped before the first update'));
    });

    const onAbort = () => {
      void shutdown();
      rejectSource(new SvidscopeError('unavailable', 'x509source: aborted before the first update', { cause: opts.signal?.reason }));
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });

    const current = (): X509Context => {
      if (closed) throw closedError();
      // Unreachable through createX509Source (it resolves only after an update); kept for safety.
      if (context === undefined) throw new SvidscopeError('unavailable', 'x509source: no X.509 context received yet');
      return context;
    };

    const source: X509Source = {
      getX509Svid: () => picker(current().svids),
      getX509BundleForTrustDomain: (td) => current().bundles.getX509BundleForTrustDomain(td),
      getX509Context: current,
      waitUntilUpdated(signal) {
        if (closed) return Promise.reject(closedError());
        return new Promise<void>((resolve, reject) => {
          const waiter = { resolve, reject };
          waiters.push(waiter);
          signal?.addEventListener('abort', () => {
            waiters = waiters.filter((w) => w !== waiter);
            reject(signal.reason);
          }, { once: true });
        });
      },
      close: shutdown,
      get closed() {
        return closed;
      },
    };
  });
}
