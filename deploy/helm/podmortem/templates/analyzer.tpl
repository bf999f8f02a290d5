{{- $s := .Values.analyzer }}
# The analyzer: Kafka → eu-stack → Kafka, a consumer group beside the indexer's; replicas share
# the crash topic's partitions. It reads dumps and captured modules from the shared storage. With
# PODMORTEM_ANALYZER_DEBUGINFOD_URLS set it also writes there the debug files it fetched
# (_buildid/<id>/debuginfo): the collector's folders are 0750, so give its user write access to
# the storage's _buildid folder before setting it.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: podmortem-analyzer
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
# It makes no Kubernetes API call: no token in its pods.
automountServiceAccountToken: false
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podmortem-analyzer
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
spec:
  replicas: {{ $s.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/name: podmortem-analyzer
  template:
    metadata:
      labels:
        app.kubernetes.io/name: podmortem-analyzer
        app.kubernetes.io/component: analyzer
      annotations:
        {{- include "podmortem.podAnnotations" 9466 | nindent 8 }}
        {{- include "podmortem.endpointsChecksum" . | nindent 8 }}
    spec:
      serviceAccountName: podmortem-analyzer
      automountServiceAccountToken: false
      # Longer than PODMORTEM_ANALYZER_SHUTDOWN_GRACE_MS: the unwind in flight is stopped and the
      # group left cleanly, so no rebalance waits for a session timeout.
      terminationGracePeriodSeconds: 35
      securityContext:
        {{- toYaml $s.podSecurityContext | nindent 8 }}
      {{- include "podmortem.scheduling" (list . $s) | nindent 6 }}
      containers:
        - name: analyzer
          image: {{ include "podmortem.image" (list . $s.image) }}
          {{- include "podmortem.pullPolicy" . | nindent 10 }}
          command: [node, --disable-warning=ExperimentalWarning, analyzer/src/main.ts]
          workingDir: /app
          {{- include "podmortem.containerSecurityContext" . | nindent 10 }}
          env:
            {{- include "podmortem.endpointEnv" (list "PODMORTEM_ANALYZER_KAFKA_BROKERS" "kafka-brokers") | nindent 12 }}
            # Where the shared volume is mounted below, the same root the collector writes.
            - name: PODMORTEM_ANALYZER_STORAGE_ROOT
              value: /var/lib/podmortem/storage
            # The emptyDir below: decompressed cores and modules, one folder per crash.
            - name: PODMORTEM_ANALYZER_WORK_DIR
              value: /var/lib/podmortem/work
            - name: PODMORTEM_ANALYZER_MAX_TEMP_BYTES
              value: '4294967296'
            - name: PODMORTEM_ANALYZER_OPS_PORT
              value: '9466'
            - name: PODMORTEM_ANALYZER_SHUTDOWN_GRACE_MS
              value: '25000'
            {{- with $s.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: ops
              containerPort: 9466
          livenessProbe:
            httpGet:
              path: /healthz
              port: ops
            periodSeconds: 20
          readinessProbe:
            httpGet:
              path: /readyz
              port: ops
            periodSeconds: 10
          resources:
            {{- toYaml $s.resources | nindent 12 }}
          volumeMounts:
            - name: storage
              mountPath: /var/lib/podmortem/storage
            - name: work
              mountPath: /var/lib/podmortem/work
      volumes:
        - name: storage
          persistentVolumeClaim:
            claimName: {{ include "podmortem.claimName" . }}
        # Bigger than PODMORTEM_ANALYZER_MAX_TEMP_BYTES, so a crash that fits its budget fits here.
        - name: work
          emptyDir:
            sizeLimit: 5Gi
