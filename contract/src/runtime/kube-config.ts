import { KubeConfig } from '@kubernetes/client-node';

// Not re-exported by the runtime's index: @kubernetes/client-node takes half a second to load,
// which the services without a Kubernetes client (the indexer) should not pay at start-up.

/**
 * The Kubernetes client configuration of a service: the kubeconfig file at `path`, or with ''
 * the default (in a pod, its service account; elsewhere $KUBECONFIG or ~/.kube/config).
 */
export function kubeConfigFrom(path: string): KubeConfig {
  const kc = new KubeConfig();
  if (path !== '') kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}
