{{- $s := .Values.retention }}
# Retention: deletes stored cores by age and for deleted namespaces (and by budget when set), the
# crash's event kept and marked expired, each removal published for the indexer. Two replicas
# for availability: a consumer-group lease on a one-partition topic makes one active. Both also
# perform the users' deletion requests the query API publishes: the one writer that takes things
# away, so the query API mounts the storage read-only.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: podmortem-retention
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
---
# Listing namespaces tells which folders to walk and which namespaces are gone.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: podmortem-retention
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
rules:
  - apiGroups: ['']
    resources: [namespaces]
    verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: podmortem-retention
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: podmortem-retention
subjects:
  - kind: ServiceAccount
    name: podmortem-retention
    namespace: {{ include "podmortem.namespace" . }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podmortem-retention
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
spec:
  replicas: {{ $s.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/name: podmortem-retention
  template:
    metadata:
      labels:
        app.kubernetes.io/name: podmortem-retention
        app.kubernetes.io/component: retention
      annotations:
        {{- include "podmortem.podAnnotations" 9468 | nindent 8 }}
        {{- include "podmortem.endpointsChecksum" . | nindent 8 }}
    spec:
      serviceAccountName: podmortem-retention
      # Longer than PODMORTEM_RETENTION_SHUTDOWN_GRACE_MS: the deletion in flight finishes and the
      # lease group is left, so the standby takes over without waiting a session timeout.
      terminationGracePeriodSeconds: 35
      securityContext:
        {{- toYaml $s.podSecurityContext | nindent 8 }}
      {{- include "podmortem.scheduling" (list . $s) | nindent 6 }}
      containers:
        - name: retention
          image: {{ include "podmortem.image" (list . $s.image) }}
          {{- include "podmortem.pullPolicy" . | nindent 10 }}
          command: [node, --disable-warning=ExperimentalWarning, retention/src/main.ts]
          workingDir: /app
          {{- include "podmortem.containerSecurityContext" . | nindent 10 }}
          env:
            {{- include "podmortem.endpointEnv" (list "PODMORTEM_RETENTION_KAFKA_BROKERS" "kafka-brokers") | nindent 12 }}
            # Where the shared volume is mounted below, the same root the collector writes.
            - name: PODMORTEM_RETENTION_STORAGE_ROOT
              value: /var/lib/podmortem/storage
            - name: PODMORTEM_RETENTION_OPS_PORT
              value: '9468'
            - name: PODMORTEM_RETENTION_SHUTDOWN_GRACE_MS
              value: '25000'
            {{- with $s.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: ops
              containerPort: 9468
          livenessProbe:
            httpGet:
              path: /healthz
              port: ops
            periodSeconds: 20
          readinessProbe:
            # Ready once in the lease group, active or standby.
            httpGet:
              path: /readyz
              port: ops
            periodSeconds: 10
          resources:
            {{- toYaml $s.resources | nindent 12 }}
          volumeMounts:
            - name: storage
              mountPath: /var/lib/podmortem/storage
      volumes:
        - name: storage
          persistentVolumeClaim:
            claimName: {{ include "podmortem.claimName" . }}
