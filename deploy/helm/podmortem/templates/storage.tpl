{{- $s := .Values.storage }}
{{- if not $s.existingClaim }}
{{- if $s.nfs.server }}
# The dumps on an NFS export, statically provisioned. The export must be writable by the
# collector: with root_squash, owned by 65534:65534 (nobody:nogroup).
apiVersion: v1
kind: PersistentVolume
metadata:
  name: podmortem-nfs
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
spec:
  capacity:
    storage: {{ $s.nfs.capacity }}
  accessModes:
    - ReadWriteMany
  persistentVolumeReclaimPolicy: {{ $s.nfs.reclaimPolicy }}
  # Empty: bound only to the claim named here, never provisioned by a storage class.
  storageClassName: ''
  claimRef:
    namespace: {{ include "podmortem.namespace" . }}
    name: podmortem-storage
  {{- with $s.nfs.mountOptions }}
  mountOptions:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  nfs:
    server: {{ $s.nfs.server }}
    path: {{ $s.nfs.path }}
---
{{- end }}
# The shared dump storage: the collector of every node writes to it, the query API reads it.
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: podmortem-storage
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
spec:
  accessModes:
    - ReadWriteMany
  {{- if $s.nfs.server }}
  storageClassName: ''
  volumeName: podmortem-nfs
  {{- else if not (kindIs "invalid" $s.storageClassName) }}
  storageClassName: {{ $s.storageClassName | quote }}
  {{- end }}
  resources:
    requests:
      storage: {{ $s.size }}
{{- end }}
