// Kubernetes object names as the API server validates them (RFC 1123), so that an event can only
// carry names a real cluster could have given. These names become storage path segments
// (storage-layout.ts), Kafka keys and tenancy decisions: a name the API server would refuse
// (`..`, `/`, NUL, upper case, `_`) in an event is a forged or corrupt event.

/** DNS-1123 label: namespaces, container names. At most 63 characters. */
export const DNS_LABEL_PATTERN = '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$';
export const DNS_LABEL_MAX = 63;

/** DNS-1123 subdomain: pod and node names. Labels joined by dots, at most 253 characters. */
export const DNS_SUBDOMAIN_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
export const DNS_SUBDOMAIN_MAX = 253;

const labelRe = new RegExp(DNS_LABEL_PATTERN);
const subdomainRe = new RegExp(DNS_SUBDOMAIN_PATTERN);

export function isDnsLabel(name: string): boolean {
  return name.length <= DNS_LABEL_MAX && labelRe.test(name);
}

export function isDnsSubdomain(name: string): boolean {
  return name.length <= DNS_SUBDOMAIN_MAX && subdomainRe.test(name);
}
