{{/* Names */}}
{{- define "glioscope.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "glioscope.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "glioscope.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "glioscope.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>"; call with (dict "root" $ "component" "gateway") */}}
{{- define "glioscope.componentName" -}}
{{- printf "%s-%s" (include "glioscope.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "glioscope.selectorLabels" -}}
app.kubernetes.io/name: {{ include "glioscope.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "glioscope.labels" -}}
{{ include "glioscope.selectorLabels" . }}
app.kubernetes.io/part-of: glioscope
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Image reference; call with (dict "root" $ "image" .Values.gateway.image) */}}
{{- define "glioscope.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "glioscope.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod security context: non-root with a fixed uid/gid; call with (dict "root" $ "uid" 10001) */}}
{{- define "glioscope.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context shared by every container the chart runs. */}}
{{- define "glioscope.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "glioscope.secretName" -}}
{{- required "secrets.existingSecret is required" .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Hosts of the stateful dependencies (in-chart or external). */}}
{{- define "glioscope.postgresql.host" -}}
{{- if .Values.postgresql.enabled -}}{{ include "glioscope.componentName" (dict "root" . "component" "postgresql") }}{{- else -}}{{ required "externalDatabase.host is required when postgresql.enabled=false" .Values.externalDatabase.host }}{{- end -}}
{{- end -}}
{{- define "glioscope.postgresql.port" -}}
{{- if .Values.postgresql.enabled -}}5432{{- else -}}{{ .Values.externalDatabase.port }}{{- end -}}
{{- end -}}
{{- define "glioscope.postgresql.user" -}}
{{- if .Values.postgresql.enabled -}}{{ .Values.postgresql.auth.username }}{{- else -}}{{ .Values.externalDatabase.username }}{{- end -}}
{{- end -}}
{{- define "glioscope.postgresql.database" -}}
{{- if .Values.postgresql.enabled -}}{{ .Values.postgresql.auth.database }}{{- else -}}{{ .Values.externalDatabase.database }}{{- end -}}
{{- end -}}
{{- define "glioscope.postgresql.orthancDatabase" -}}
{{- if .Values.postgresql.enabled -}}{{ .Values.postgresql.auth.orthancDatabase }}{{- else -}}{{ .Values.externalDatabase.orthancDatabase }}{{- end -}}
{{- end -}}
{{- define "glioscope.rabbitmq.host" -}}
{{- if .Values.rabbitmq.enabled -}}{{ include "glioscope.componentName" (dict "root" . "component" "rabbitmq") }}{{- else -}}{{ required "externalRabbitmq.host is required when rabbitmq.enabled=false" .Values.externalRabbitmq.host }}{{- end -}}
{{- end -}}
{{- define "glioscope.rabbitmq.port" -}}
{{- if .Values.rabbitmq.enabled -}}5672{{- else -}}{{ .Values.externalRabbitmq.port }}{{- end -}}
{{- end -}}
{{- define "glioscope.rabbitmq.user" -}}
{{- if .Values.rabbitmq.enabled -}}{{ .Values.rabbitmq.auth.username }}{{- else -}}{{ .Values.externalRabbitmq.username }}{{- end -}}
{{- end -}}
{{- define "glioscope.rabbitmq.vhost" -}}
{{- if .Values.rabbitmq.enabled -}}{{ "" }}{{- else -}}{{ .Values.externalRabbitmq.vhost }}{{- end -}}
{{- end -}}
{{- define "glioscope.redis.host" -}}
{{- if .Values.redis.enabled -}}{{ include "glioscope.componentName" (dict "root" . "component" "redis") }}{{- else -}}{{ required "externalRedis.host is required when redis.enabled=false" .Values.externalRedis.host }}{{- end -}}
{{- end -}}
{{- define "glioscope.redis.port" -}}
{{- if .Values.redis.enabled -}}6379{{- else -}}{{ .Values.externalRedis.port }}{{- end -}}
{{- end -}}
{{- define "glioscope.orthanc.base" -}}
{{- if .Values.orthanc.enabled -}}
{{- printf "http://%s:8042" (include "glioscope.componentName" (dict "root" . "component" "orthanc")) -}}
{{- else -}}
{{- $u := urlParse (required "externalOrthanc.url is required when orthanc.enabled=false" .Values.externalOrthanc.url) -}}
{{- printf "%s://%s%s" $u.scheme $u.host (trimSuffix "/" $u.path) -}}
{{- end -}}
{{- end -}}

{{/*
Environment of every Python service (gateway, workers, reporting, nifti): the settings of
glioscope_common.settings.CommonSettings whose defaults are development-only. Passwords come from
the existing Secret and are spliced into the URLs with Kubernetes' $(VAR) expansion, so they must be
URL-safe (see docs/deploy.md); Orthanc's credentials are settings of their own (never in its URLs).
*/}}
{{- define "glioscope.pythonEnv" -}}
{{- $root := . -}}
{{- $secret := include "glioscope.secretName" . -}}
- name: DATABASE_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: {{ .Values.secrets.keys.databasePassword }}}}
- name: RABBITMQ_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: {{ .Values.secrets.keys.rabbitmqPassword }}}}
- name: REDIS_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: {{ .Values.secrets.keys.redisPassword }}}}
- name: GLIOSCOPE_ORTHANC_USERNAME
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: {{ .Values.secrets.keys.orthancUsername }}}}
- name: GLIOSCOPE_ORTHANC_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: {{ .Values.secrets.keys.orthancPassword }}}}
- name: GLIOSCOPE_SERVICE_TOKEN
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: {{ .Values.secrets.keys.serviceToken }}}}
- name: GLIOSCOPE_ENVIRONMENT
  value: {{ .Values.environment | quote }}
- name: GLIOSCOPE_LOG_JSON
  value: {{ .Values.logJson | quote }}
- name: GLIOSCOPE_OTEL_ENDPOINT
  value: {{ .Values.otelEndpoint | quote }}
- name: GLIOSCOPE_DATA_DIR
  value: /tmp/glioscope
- name: GLIOSCOPE_DATABASE_URL
  value: {{ printf "postgresql+psycopg://%s:$(DATABASE_PASSWORD)@%s:%s/%s" (include "glioscope.postgresql.user" $root) (include "glioscope.postgresql.host" $root) (include "glioscope.postgresql.port" $root) (include "glioscope.postgresql.database" $root) | quote }}
- name: GLIOSCOPE_BROKER_URL
  value: {{ printf "amqp://%s:$(RABBITMQ_PASSWORD)@%s:%s/%s" (include "glioscope.rabbitmq.user" $root) (include "glioscope.rabbitmq.host" $root) (include "glioscope.rabbitmq.port" $root) (include "glioscope.rabbitmq.vhost" $root) | quote }}
- name: GLIOSCOPE_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:%s/0" (include "glioscope.redis.host" $root) (include "glioscope.redis.port" $root) | quote }}
- name: GLIOSCOPE_ORTHANC_URL
  value: {{ include "glioscope.orthanc.base" $root | quote }}
- name: GLIOSCOPE_DICOMWEB_URL
  value: {{ printf "%s/dicom-web" (include "glioscope.orthanc.base" $root) | quote }}
- name: GLIOSCOPE_INFERENCE_URL
  value: {{ if eq (include "glioscope.tritonSidecar" $root) "true" }}"grpc://127.0.0.1:8001"{{ else if .Values.triton.enabled }}{{ printf "grpc://%s:8001" (include "glioscope.componentName" (dict "root" $root "component" "triton")) | quote }}{{ else }}"onnxruntime"{{ end }}
- name: GLIOSCOPE_NIFTI_URL
  value: {{ printf "http://%s:8003" (include "glioscope.componentName" (dict "root" $root "component" "nifti")) | quote }}
- name: GLIOSCOPE_REPORTING_URL
  value: {{ printf "http://%s:8002" (include "glioscope.componentName" (dict "root" $root "component" "reporting")) | quote }}
- name: GLIOSCOPE_MODEL_REPOSITORY
  value: /models
- name: GLIOSCOPE_MODEL_NAME
  value: {{ .Values.modelName | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The /tmp emptyDir every read-only container gets. */}}
{{- define "glioscope.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}
{{- define "glioscope.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Probes on the FastAPI services' real endpoints; call with (dict "port" "http" "p" .Values.x.probes) */}}
{{- define "glioscope.httpProbes" -}}
startupProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 5
  failureThreshold: {{ .p.startupFailureThreshold }}
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{- define "glioscope.podCommon" -}}
{{- include "glioscope.imagePullSecrets" .root }}
serviceAccountName: {{ include "glioscope.fullname" .root }}
automountServiceAccountToken: false
{{- with (default .root.Values.priorityClassName .priorityClassName) }}
priorityClassName: {{ . }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
{{ toYaml . }}
{{- end }}
{{- with .affinity }}
affinity:
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{/* "true" when Triton runs as a container of every gpu worker pod (triton.placement=sidecar). */}}
{{- define "glioscope.tritonSidecar" -}}
{{- if and .Values.triton.enabled (eq .Values.triton.placement "sidecar") }}true{{ end }}
{{- end }}

{{/* Init container filling the "models" volume from the worker image (triton.models.source=image). */}}
{{- define "glioscope.tritonModelsInit" -}}
{{- if eq .Values.triton.models.source "image" }}
# The worker image carries model_repository/ at /models: copy it for Triton.
- name: models
  image: {{ include "glioscope.image" (dict "root" . "image" .Values.workers.image) }}
  imagePullPolicy: {{ .Values.workers.image.pullPolicy }}
  command: ["sh", "-c", "cp -R /models/. /triton-models/"]
  resources:
    requests: {cpu: 100m, memory: 128Mi}
    limits: {memory: 512Mi}
  securityContext:
    {{- include "glioscope.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: models
      mountPath: /triton-models
{{- end }}
{{- end }}

{{/* The Triton container (its own Deployment, or a sidecar of the gpu workers). */}}
{{- define "glioscope.tritonContainer" -}}
{{- $c := .Values.triton -}}
{{- /* In a worker pod the port names carry a prefix: the worker has its own "metrics". */}}
{{- $prefix := ternary "triton-" "" (eq (include "glioscope.tritonSidecar" .) "true") -}}
- name: triton
  image: {{ include "glioscope.image" (dict "root" . "image" $c.image) }}
  imagePullPolicy: {{ $c.image.pullPolicy }}
  command: ["tritonserver"]
  args:
    - --model-repository=/models
    - --model-control-mode=explicit
    - --load-model={{ .Values.modelName }}
    {{- if $c.brainModel }}
    - --load-model=glioscope_brain_bbox
    - --load-model=glioscope_brain_mask
    {{- end }}
    - --strict-readiness=true
    - --allow-metrics=true
    - --allow-gpu-metrics=true
    {{- range $c.extraArgs }}
    - {{ . }}
    {{- end }}
  {{- with $c.glibcTunables }}
  env:
    - name: GLIBC_TUNABLES
      value: {{ . | quote }}
  {{- end }}
  ports:
    - {name: {{ $prefix }}http, containerPort: 8000, protocol: TCP}
    - {name: {{ $prefix }}grpc, containerPort: 8001, protocol: TCP}
    - {name: {{ $prefix }}metrics, containerPort: 8002, protocol: TCP}
  startupProbe:
    httpGet: {path: /v2/health/ready, port: 8000}
    periodSeconds: 10
    failureThreshold: {{ $c.probes.startupFailureThreshold }}
  livenessProbe:
    httpGet: {path: /v2/health/live, port: 8000}
    periodSeconds: 15
    timeoutSeconds: 5
    failureThreshold: 3
  readinessProbe:
    httpGet: {path: /v2/health/ready, port: 8000}
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 3
  resources:
    requests:
      {{- toYaml $c.resources.requests | nindent 6 }}
      nvidia.com/gpu: {{ $c.gpus }}
    limits:
      {{- toYaml $c.resources.limits | nindent 6 }}
      nvidia.com/gpu: {{ $c.gpus }}
  securityContext:
    {{- include "glioscope.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    {{- include "glioscope.tmpMount" . | nindent 4 }}
    - name: models
      mountPath: /models
      readOnly: true
    - name: shm
      mountPath: /dev/shm
{{- end }}

{{/* Volumes of a pod running Triton: its /dev/shm (memory) and the model repository. */}}
{{- define "glioscope.tritonVolumes" -}}
{{- $c := .Values.triton -}}
- name: shm
  emptyDir: {medium: Memory, sizeLimit: {{ $c.shmSize }}}
- name: models
  {{- if eq $c.models.source "pvc" }}
  persistentVolumeClaim:
    claimName: {{ required "triton.models.existingClaim is required when triton.models.source=pvc" $c.models.existingClaim }}
    readOnly: true
  {{- else }}
  emptyDir: {sizeLimit: {{ $c.models.sizeLimit }}}
  {{- end }}
{{- end }}
