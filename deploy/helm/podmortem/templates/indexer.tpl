{{- $s := .Values.indexer }}
# The indexer: Kafka → Elasticsearch, a consumer group; replicas share the topic's partitions.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: podmortem-indexer
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
# It makes no Kubernetes API call: no token in its pods.
automountServiceAccountToken: false
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podmortem-indexer
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
spec:
  replicas: {{ $s.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/name: podmortem-indexer
  template:
    metadata:
      labels:
        app.kubernetes.io/name: podmortem-indexer
        app.kubernetes.io/component: indexer
      annotations:
        {{- include "podmortem.podAnnotations" 9465 | nindent 8 }}
        {{- include "podmortem.endpointsChecksum" . | nindent 8 }}
    spec:
      serviceAccountName: podmortem-indexer
      automountServiceAccountToken: false
      # Longer than PODMORTEM_INDEXER_SHUTDOWN_GRACE_MS: the batch in flight is finished and the
      # group left cleanly, so no rebalance waits for a session timeout.
      terminationGracePeriodSeconds: 35
      securityContext:
        {{- toYaml $s.podSecurityContext | nindent 8 }}
      {{- include "podmortem.scheduling" (list . $s) | nindent 6 }}
      containers:
        - name: indexer
          image: {{ include "podmortem.image" (list . $s.image) }}
          {{- include "podmortem.pullPolicy" . | nindent 10 }}
          command: [node, --disable-warning=ExperimentalWarning, indexer/src/main.ts]
          workingDir: /app
          {{- include "podmortem.containerSecurityContext" . | nindent 10 }}
          env:
            {{- include "podmortem.endpointEnv" (list "PODMORTEM_INDEXER_KAFKA_BROKERS" "kafka-brokers") | nindent 12 }}
            {{- include "podmortem.endpointEnv" (list "PODMORTEM_INDEXER_ELASTICSEARCH_URL" "elasticsearch-url") | nindent 12 }}
            - name: PODMORTEM_INDEXER_INDEX_REPLICAS
              value: {{ $s.indexReplicas | toString | quote }}
            - name: PODMORTEM_INDEXER_OPS_PORT
              value: '9465'
            - name: PODMORTEM_INDEXER_SHUTDOWN_GRACE_MS
              value: '25000'
            {{- with $s.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: ops
              containerPort: 9465
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
