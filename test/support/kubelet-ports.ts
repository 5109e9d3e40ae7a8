/**
 * The port kubelet calls for a container's probe or lifecycle httpGet, by kubelet's own rule
 * (k8s.io/kubernetes v1.34 pkg/probe/util.go, ResolveContainerPort): a number is taken as it is;
 * a name is looked up among the ports of that same container only, then tried as a number. The
 * API server does not check this: a name of another container's port is stored, and fails the
 * hook at run time (a FailedPreStopHook event; the container is then stopped at once).
 */

interface ContainerPorts {
  name?: unknown;
  ports?: unknown;
}

export function kubeletPort(container: ContainerPorts, port: unknown): number {
  if (typeof port === 'number') return port;
  if (typeof port !== 'string') throw new Error(`container ${String(container.name)}: httpGet port ${String(port)} is neither a number nor a name`);
  const own = Array.isArray(container.ports) ? (container.ports as { name?: unknown; containerPort?: unknown }[]) : [];
  const named = own.find((p) => p.name === port);
  if (named !== undefined && typeof named.containerPort === 'number') return named.containerPort;
  if (/^\d+$/.test(port)) return Number(port);
  throw new Error(`container ${String(container.name)}: kubelet cannot resolve httpGet port "${port}": no port of that name in this container (port ${port} not found)`);
}
