import * as grpc from '@grpc/grpc-js';

/**
 * A tiny gRPC backend on loopback that answers `Who` with its own name, so a test can tell which
 * backend a call reached. Messages are raw UTF-8 bytes: no .proto needed on either side.
 */
export const WHO_METHOD = '/switchyard.test.Echo/Who';

const identity = (bytes: Buffer): Buffer => bytes;

const echoService: grpc.ServiceDefinition = {
  Who: {
    path: WHO_METHOD,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
    originalName: 'who',
  },
};

export interface EchoBackend {
  readonly name: string;
  readonly port: number;
  /** How many calls this backend answered. */
  calls(): number;
  stop(): Promise<void>;
}

export async function startEchoBackend(name: string): Promise<EchoBackend> {
  const server = new grpc.Server();
  let calls = 0;
  server.addService(echoService, {
    Who: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      calls++;
      callback(null, Buffer.from(name));
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  let stopped = false;
  return {
    name,
    port,
    calls: () => calls,
    stop: () => {
      if (stopped) return Promise.resolve();
      stopped = true;
      // Force: a graceful shutdown would wait for the xDS client's idle connection to go away.
      server.forceShutdown();
      return Promise.resolve();
    },
  };
}

/** Calls `Who` on `client` and resolves with the name of the backend that answered. */
export function who(client: grpc.Client, deadlineMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      WHO_METHOD,
      identity,
      identity,
      Buffer.alloc(0),
      { deadline: Date.now() + deadlineMs },
      (err, response) => (err || response === undefined ? reject(err ?? new Error('no response')) : resolve(response.toString())),
    );
  });
}
