/**
 * A generic gRPC client of Hubble's Observer API, driven by the .proto
 * files alone (api/hubble, loaded with @grpc/proto-loader): what any Hubble
 * client built from those definitions sees. Nothing of xlb's server code is
 * used here.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PROTO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../api/hubble');

/** One GetFlowsResponse as decoded (Hubble's field names, enums by name). */
export interface HubbleResponse {
  flow?: Record<string, any>;
  lost_events?: { source: string; num_events_lost: number };
  node_name?: string;
  time?: { seconds: number; nanos: number };
  response_types?: string;
}

/** An Observer client on `address` (`unix:PATH` or `HOST:PORT`). */
export function hubbleClient(address: string) {
  const def = protoLoader.loadSync('observer/observer.proto', { includeDirs: [PROTO_DIR], keepCase: true, longs: Number, enums: String, defaults: true, arrays: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as any;
  const client = new pkg.observer.Observer(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
  const unary = <T>(method: string, req: object = {}) =>
    new Promise<T>((resolve, reject) => client[method](req, { deadline: Date.now() + 10_000 }, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))));
  return {
    serverStatus: () => unary<Record<string, any>>('ServerStatus'),
    getNodes: () => unary<{ nodes: Array<Record<string, any>> }>('GetNodes'),
    /** Every response of a GetFlows call that ends by itself (no follow). */
    getFlows(req: object): Promise<HubbleResponse[]> {
      return new Promise((resolve, reject) => {
        const out: HubbleResponse[] = [];
        const call = client.GetFlows(req, { deadline: Date.now() + 10_000 }) as grpc.ClientReadableStream<HubbleResponse>;
        call.on('data', (r) => out.push(r));
        call.on('error', reject);
        call.on('end', () => resolve(out));
      });
    },
    /** A GetFlows stream left open (follow); the caller cancels it. */
    stream(req: object): grpc.ClientReadableStream<HubbleResponse> {
      return client.GetFlows(req) as grpc.ClientReadableStream<HubbleResponse>;
    },
    close: () => client.close(),
  };
}
