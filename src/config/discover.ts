/**
 * What `xlb agent` takes from the machine when the configuration leaves it
 * out, so that one configuration file serves any single host unedited (the
 * docker-compose.yml setup):
 *
 * - `node.name`: the host name, lower-cased (what the kubelet names its Node
 *   by default);
 * - `interfaces`: the interfaces of the IPv4 default routes of the agent's
 *   network namespace (main table, /proc/net/route), lowest metric first.
 *
 * {@link loadConfig} applies it only when given one ({@link hostDiscovery});
 * a value in the file or on the command line always wins.
 */
import fs from 'node:fs';
import os from 'node:os';

/** Where loadConfig takes the values a configuration leaves out. */
export interface ConfigDiscovery {
  /** The node name to use when `node.name` is left out (unchecked: the schema checks it). */
  nodeName(): string;
  /**
   * The interfaces to use when `interfaces` is left out; empty when there
   * are none to take.
   * @throws Error saying why they could not be found
   */
  interfaces(): string[];
}

/** RTF_UP of a /proc/net/route line's Flags (include/uapi/linux/route.h). */
const RTF_UP = 0x1;

/**
 * The interfaces of the IPv4 default routes in the text of /proc/net/route
 * (the main table): routes up with destination and mask 0.0.0.0, ordered by
 * metric (then table order), each interface once.
 * @param text the file's content: a header line, then one tab-separated route per line
 */
export function defaultRouteInterfaces(text: string): string[] {
  const routes: Array<{ iface: string; metric: number; order: number }> = [];
  text
    .split('\n')
    .slice(1)
    .forEach((line, order) => {
      const f = line.trim().split(/\s+/);
      if (f.length < 8) return;
      const [iface, dest, , flags, , , metric, mask] = f;
      if (dest !== '00000000' || mask !== '00000000' || !(parseInt(flags, 16) & RTF_UP)) return;
      routes.push({ iface, metric: Number(metric), order });
    });
  routes.sort((a, b) => a.metric - b.metric || a.order - b.order);
  return [...new Set(routes.map((r) => r.iface))];
}

/** The machine's: its host name and its default routes (read when asked). */
export const hostDiscovery: ConfigDiscovery = {
  nodeName: () => os.hostname().toLowerCase(),
  interfaces: () => defaultRouteInterfaces(fs.readFileSync('/proc/net/route', 'utf8')),
};
