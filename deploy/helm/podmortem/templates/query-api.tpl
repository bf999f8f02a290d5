{{- $s := .Values.queryApi }}
# The query API: search, get and download crashes, authorised per namespace by the caller's own
# Kubernetes identity. It reads the shared storage, never writes it.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: podmortem-query-api
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
---
# Who is calling (TokenReview) and may they (SubjectAccessReview): the API asks Kubernetes, on
# behalf of each caller, instead of holding rights to crashes itself.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: podmortem-query-api
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
rules:
  - apiGroups: [authentication.k8s.io]
    resources: [tokenreviews]
    verbs: [create]
  - apiGroups: [authorization.k8s.io]
    resources: [subjectaccessreviews]
    verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: podmortem-query-api
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: podmortem-query-api
subjects:
  - kind: ServiceAccount
    name: podmortem-query-api
    namespace: {{ include "podmortem.namespace" . }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podmortem-query-api
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
spec:
  replicas: {{ $s.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/name: podmortem-query-api
  template:
    metadata:
      labels:
        app.kubernetes.io/name: podmortem-query-api
        app.kubernetes.io/component: query-api
      annotations:
        {{- include "podmortem.podAnnotations" 9467 | nindent 8 }}
        {{- include "podmortem.endpointsChecksum" . | nindent 8 }}
    spec:
      serviceAccountName: podmortem-query-api
      # Longer than PODMORTEM_API_SHUTDOWN_GRACE_MS: downloads in flight get their time.
      terminationGracePeriodSeconds: 20
      securityContext:
        {{- toYaml $s.podSecurityContext | nindent 8 }}
      {{- include "podmortem.scheduling" (list . $s) | nindent 6 }}
      containers:
        - name: query-api
          image: {{ include "podmortem.image" (list . $s.image) }}
          {{- include "podmortem.pullPolicy" . | nindent 10 }}
          command: [node, --disable-warning=ExperimentalWarning, query-api/src/main.ts]
          workingDir: /app
          {{- include "podmortem.containerSecurityContext" . | nindent 10 }}
          env:
            - name: PODMORTEM_API_PORT
              value: '8080'
            # Where the shared volume is mounted below, the same root the collector writes.
            - name: PODMORTEM_API_STORAGE_ROOT
              value: /var/lib/podmortem/storage
            {{- include "podmortem.endpointEnv" (list "PODMORTEM_API_ELASTICSEARCH_URL" "elasticsearch-url") | nindent 12 }}
            {{- include "podmortem.endpointEnv" (list "PODMORTEM_API_PROMETHEUS_URL" "prometheus-url") | nindent 12 }}
            {{- include "podmortem.endpointEnv" (list "PODMORTEM_API_OTLP_TRACES_ENDPOINT" "otlp-traces-endpoint") | nindent 12 }}
            - name: PODMORTEM_API_SHUTDOWN_GRACE_MS
              value: '10000'
            {{- with $s.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            # The API, /healthz and /readyz; /metrics is on a port of its own, for Prometheus alone
            # (PODMORTEM_API_OPS_PORT).
            - name: http
              containerPort: 8080
            - name: ops
              containerPort: 9467
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 20
          readinessProbe:
            # Ready when Elasticsearch answers and the storage root is mounted.
            httpGet:
              path: /readyz
              port: http
            periodSeconds: 10
          resources:
            {{- toYaml $s.resources | nindent 12 }}
          volumeMounts:
            - name: storage
              mountPath: /var/lib/podmortem/storage
              readOnly: true
      volumes:
        - name: storage
          persistentVolumeClaim:
            claimName: {{ include "podmortem.claimName" . }}
            readOnly: true
---
apiVersion: v1
kind: Service
metadata:
  name: podmortem-query-api
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
spec:
  selector:
    app.kubernetes.io/name: podmortem-query-api
  ports:
    - name: http
      port: 8080
      targetPort: http
