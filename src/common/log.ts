import { pino, type Logger } from 'pino';

export type { Logger };

/** Every level a config file or `--log-level` may name, in pino's order. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Structured JSON logs (pino) on stderr, so stdout stays free for command output. Built only in
 * composition roots; everything else receives a (child) logger.
 */
export function createLogger(opts: { level?: LogLevel; name: string; destination?: number }): Logger {
  return pino(
    { name: opts.name, level: opts.level ?? 'info', base: { component: opts.name }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: opts.destination ?? 2, sync: true }),
  );
}

/** A logger that drops everything: the default where none was injected (tests, libraries). */
export function nullLogger(): Logger {
  return pino({ level: 'silent' });
}
