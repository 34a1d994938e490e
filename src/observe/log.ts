// One logger factory for every process podroute runs (agent, lab daemons, CLI).
import winston from 'winston';

export type LogFormat = 'json' | 'text';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type Logger = winston.Logger;

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Which part of podroute writes (agent, bgp, routes, lab-kubelet...): a field on every line. */
  component?: string;
  /** Logs go to stderr so that stdout stays free for command output (tables, JSON). */
  stream?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const format =
    options.format === 'text'
      ? winston.format.combine(
          winston.format.timestamp(),
          winston.format.printf(({ timestamp, level, message, component, ...rest }) => {
            const extra = Object.keys(rest).length > 0 ? ' ' + JSON.stringify(rest) : '';
            const who = typeof component === 'string' ? ` [${component}]` : '';
            return `${String(timestamp)} ${level}${who} ${String(message)}${extra}`;
          }),
        )
      : winston.format.combine(winston.format.timestamp(), winston.format.json());
  return winston.createLogger({
    level: options.level ?? 'info',
    format,
    defaultMeta: options.component === undefined ? {} : { component: options.component },
    transports: [new winston.transports.Stream({ stream: options.stream ?? process.stderr })],
  });
}
