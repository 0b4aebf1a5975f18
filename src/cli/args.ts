/**
 * Argument parsers of the `xlb` command line: each takes the text a user
 * typed and returns the value, or throws commander's InvalidArgumentError
 * with a message saying what was expected, so that commander names the
 * option or argument and exits non-zero before anything runs.
 */
import { InvalidArgumentError } from 'commander';
import { isIPv4 } from '../util/ip.js';

/** A Kubernetes name (DNS-1123 label for a namespace, DNS-1123 subdomain for a Service). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * An agent API address: `HOST:PORT` (PORT decimal 1..65535, HOST not empty)
 * or `unix:/absolute/path`.
 * @throws InvalidArgumentError otherwise
 */
export function parseApiAddress(text: string): string {
  if (text.startsWith('unix:')) {
    if (!text.slice(5).startsWith('/')) throw new InvalidArgumentError('a unix socket is unix:/absolute/path');
    return text;
  }
  const i = text.lastIndexOf(':');
  const host = i > 0 ? text.slice(0, i) : '';
  const port = text.slice(i + 1);
  if (i <= 0 || !host || !/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new InvalidArgumentError('expected HOST:PORT (a port 1..65535) or unix:/path, e.g. 127.0.0.1:9876');
  }
  if (host.startsWith('[') !== host.endsWith(']')) throw new InvalidArgumentError('an IPv6 host is written in brackets, e.g. [::1]:9876');
  return text;
}

/**
 * A Service as `NAMESPACE/NAME` (both lower-case DNS names, as Kubernetes
 * validates them).
 * @throws InvalidArgumentError otherwise, with the form expected
 */
export function parseNamespacedName(text: string): string {
  const parts = text.split('/');
  if (parts.length !== 2) throw new InvalidArgumentError(`expected NAMESPACE/NAME, e.g. default/${text.includes('/') ? 'web' : text || 'web'}`);
  const [ns, name] = parts;
  if (!DNS_LABEL.test(ns) || ns.length > 63) throw new InvalidArgumentError(`namespace ${JSON.stringify(ns)} is not a Kubernetes namespace name (lower-case letters, digits, '-')`);
  if (!DNS_SUBDOMAIN.test(name) || name.length > 253) throw new InvalidArgumentError(`name ${JSON.stringify(name)} is not a Kubernetes Service name (lower-case letters, digits, '-', '.')`);
  return text;
}

/**
 * `xlb status -o`: text, json or yaml.
 * @throws InvalidArgumentError otherwise
 */
export function parseStatusOutput(text: string): 'text' | 'json' | 'yaml' {
  if (text === 'text' || text === 'json' || text === 'yaml') return text;
  throw new InvalidArgumentError('expected text, json or yaml');
}

/** `-o` of `xlb connectivity test`: text or json. @throws InvalidArgumentError otherwise */
export function parseTextJson(text: string): 'text' | 'json' {
  if (text === 'text' || text === 'json') return text;
  throw new InvalidArgumentError('expected text or json');
}

/** A regular expression (JavaScript syntax, unanchored). @throws InvalidArgumentError when it does not compile */
export function parseRegex(text: string): RegExp {
  try {
    return new RegExp(text);
  } catch (e) {
    throw new InvalidArgumentError(`not a regular expression: ${(e as Error).message}`);
  }
}

/**
 * A Kubernetes node name (a DNS-1123 subdomain: lower-case letters, digits,
 * '-' and '.', at most 253 characters).
 * @throws InvalidArgumentError otherwise
 */
export function parseNodeName(text: string): string {
  if (text.length > 253 || !text.split('.').every((l) => DNS_LABEL.test(l) && l.length <= 63)) {
    throw new InvalidArgumentError(`${JSON.stringify(text)} is not a Kubernetes node name (lower-case letters, digits, '-' and '.')`);
  }
  return text;
}

/**
 * A parser of whole decimal numbers from `min` to `max`.
 * @returns a function that throws InvalidArgumentError for anything else (signs, fractions, exponents, hex, blanks)
 */
export function integerIn(min: number, max: number): (text: string) => number {
  return (text: string) => {
    const n = /^[0-9]{1,9}$/.test(text) ? Number(text) : NaN;
    if (!(n >= min && n <= max)) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
    return n;
  };
}

/** An IPv4 address. @throws InvalidArgumentError otherwise */
export function parseIPv4(text: string): string {
  if (!isIPv4(text)) throw new InvalidArgumentError('expected an IPv4 address, e.g. 198.18.0.11');
  return text;
}

/** `IPv4` or `IPv4:PORT` (a filter of `xlb ct list`). @throws InvalidArgumentError otherwise */
export function parseAddressFilter(text: string): string {
  const i = text.indexOf(':');
  const addr = i < 0 ? text : text.slice(0, i);
  if (!isIPv4(addr)) throw new InvalidArgumentError('expected IPv4 or IPv4:PORT, e.g. 203.0.113.10:80');
  if (i >= 0) {
    const port = /^[0-9]{1,5}$/.test(text.slice(i + 1)) ? Number(text.slice(i + 1)) : NaN;
    if (!(port >= 1 && port <= 65535)) throw new InvalidArgumentError('the port must be a whole number from 1 to 65535');
  }
  return text;
}

/** `tcp` or `udp`, any case. @throws InvalidArgumentError otherwise */
export function parseProtocol(text: string): 'tcp' | 'udp' {
  const p = text.toLowerCase();
  if (p !== 'tcp' && p !== 'udp') throw new InvalidArgumentError('expected tcp or udp');
  return p;
}

/** `FORWARDED` or `DROPPED`, any case. @throws InvalidArgumentError otherwise */
export function parseVerdict(text: string): 'FORWARDED' | 'DROPPED' {
  const v = text.toUpperCase();
  if (v !== 'FORWARDED' && v !== 'DROPPED') throw new InvalidArgumentError('expected FORWARDED or DROPPED');
  return v;
}

/** `compact` or `json`. @throws InvalidArgumentError otherwise */
export function parseOutput(text: string): 'compact' | 'json' {
  if (text !== 'compact' && text !== 'json') throw new InvalidArgumentError('expected compact or json');
  return text;
}
