{{/* Names, labels and the checks every render runs. */}}

{{- define "aws-s3-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; 52 characters leave room for suffixes such as -migrate. */}}
{{- define "aws-s3-service.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aws-s3-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aws-s3-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aws-s3-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The API pods only (the migration Job's pods are component=migrate). */}}
{{- define "aws-s3-service.apiSelectorLabels" -}}
{{ include "aws-s3-service.selectorLabels" . }}
app.kubernetes.io/component: api
{{- end }}

{{- define "aws-s3-service.labels" -}}
helm.sh/chart: {{ include "aws-s3-service.chart" . }}
{{ include "aws-s3-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aws-s3-service
{{- end }}

{{- define "aws-s3-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aws-s3-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false (the IRSA-annotated account to run as)" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding DATABASE_URL / JWT_SECRET: yours (existingSecret) or the chart's. */}}
{{- define "aws-s3-service.secretName" -}}
{{- default (include "aws-s3-service.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "aws-s3-service.image" -}}
{{- $repo := required "image.repository is required: the ECR repository URL (terraform output ecr_repository_url)" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the migration Job mounts the sources ConfigMap (`python -m app sources apply` reads the folder). */}}
{{- define "aws-s3-service.sourcesPath" -}}
/etc/aws-s3-service/sources
{{- end }}
{{- /*
One container of the migration Job, hardened like the API's: dict with root (the chart's context), secret
(the Secret holding DATABASE_URL), name, command (the arguments after `python -m app`) and, for the
`sources apply` container, sources=true (S3_BUCKET_NAME, the default bucket of a source that names none,
and the sources ConfigMap mounted read-only). The chart's ConfigMap is not there yet on a first install
(hooks run first), so settings are passed as env values.
*/}}
{{- define "aws-s3-service.migrationContainer" -}}
{{- $root := .root -}}
- name: {{ .name }}
  image: {{ include "aws-s3-service.image" $root | quote }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command: {{ concat (list "python" "-m" "app") .command | toJson }}
  env:
    - name: DATABASE_URL
      valueFrom:
        secretKeyRef:
          name: {{ .secret }}
          key: DATABASE_URL
    {{- if .sources }}
    - name: S3_BUCKET_NAME
      value: {{ required "config.S3_BUCKET_NAME is required (terraform outputs of the messaging module)" $root.Values.config.S3_BUCKET_NAME | quote }}
    {{- end }}
    {{- range $key := list "DB_COMMAND_TIMEOUT_SECONDS" "DB_CONNECT_TIMEOUT_SECONDS" "LOG_LEVEL" "LOG_FORMAT" }}
    {{- $value := get $root.Values.config $key }}
    {{- if and (not (kindIs "invalid" $value)) (ne (toString $value) "") }}
    - name: {{ $key }}
      value: {{ include "aws-s3-service.envValue" $value | quote }}
    {{- end }}
    {{- end }}
  resources:
    {{- toYaml $root.Values.migration.resources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 1000
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    privileged: false
    capabilities:
      drop: ["ALL"]
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if .sources }}
    - name: sources
      mountPath: {{ include "aws-s3-service.sourcesPath" $root }}
      readOnly: true
    {{- end }}
{{- end }}

{{/* The Service's cluster DNS name (the DestinationRule's and VirtualService's host). */}}
{{- define "aws-s3-service.serviceHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "aws-s3-service.fullname" .) .Release.Namespace }}
{{- end }}

{{/*
An env value as the service reads it. Helm hands numbers over as float64, which print as 2.147483648e+09:
whole numbers are printed as integers.
*/}}
{{- define "aws-s3-service.envValue" -}}
{{- $v := . }}
{{- if or (kindIs "float64" $v) (kindIs "float32" $v) }}
{{- if eq (float64 (int64 $v)) (float64 $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else }}
{{- $v }}
{{- end }}
{{- end }}

{{/*
Cross-field checks JSON Schema cannot express. Rendering fails with one line naming the setting.
*/}}
{{- define "aws-s3-service.validate" -}}
{{- $c := .Values.config }}
{{- if not (kindIs "invalid" (dig "virtualService" "read" nil .Values.istio)) }}
{{- fail "istio.virtualService.read is no longer a setting: use istio.virtualService.timeout and istio.virtualService.retries instead (the route of GET, HEAD, OPTIONS)" }}
{{- end }}
{{- range $key := list "S3_BUCKET_NAME" "SNS_TOPIC_ARN" "SQS_QUEUE_URL" }}
{{- if not (get $c $key) }}
{{- fail (printf "config.%s is required (terraform outputs of the messaging module)" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.serviceAccount.create .Values.serviceAccount.requireRoleArn (not .Values.serviceAccount.roleArn) }}
{{- fail "serviceAccount.roleArn is required: the IRSA role (terraform output irsa_role_arn); set serviceAccount.requireRoleArn=false only where pods get AWS credentials another way" }}
{{- end }}
{{- if not .Values.existingSecret }}
{{- if not .Values.secrets.DATABASE_URL }}
{{- fail "secrets.DATABASE_URL is required (or existingSecret: the name of a Secret with DATABASE_URL)" }}
{{- end }}
{{- if and (not .Values.secrets.JWT_SECRET) (not $c.JWT_JWKS_URL) }}
{{- fail "set config.JWT_JWKS_URL (RS256, production) or secrets.JWT_SECRET (HS256)" }}
{{- end }}
{{- end }}
{{- if and $c.JWT_JWKS_URL (or (not $c.JWT_ISSUER) (not $c.JWT_AUDIENCE)) }}
{{- fail "config.JWT_ISSUER and config.JWT_AUDIENCE are required with config.JWT_JWKS_URL (else tokens minted for other applications of the identity provider pass)" }}
{{- end }}
{{- $grace := int $c.SHUTDOWN_GRACE_SECONDS }}
{{- $preStop := int .Values.preStopSleepSeconds }}
{{- $http := int .Values.server.gracefulTimeoutSeconds }}
{{- $needed := add $preStop $http $grace }}
{{- $tgps := int .Values.terminationGracePeriodSeconds }}
{{- if le $tgps $needed }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds (%d) + server.gracefulTimeoutSeconds (%d) + config.SHUTDOWN_GRACE_SECONDS (%d) = %d, or in-flight files are killed mid-load" $tgps $preStop $http $grace $needed) }}
{{- end }}
{{- if .Values.istio.enabled }}
{{- include "aws-s3-service.requireIstioApis" . }}
{{- $drain := int .Values.istio.sidecar.terminationDrainSeconds }}
{{- if or (lt $drain $needed) (ge $drain $tgps) }}
{{- fail (printf "istio.sidecar.terminationDrainSeconds (%d) must be at least %d (the app's shutdown needs the sidecar for PostgreSQL/S3/SQS) and below terminationGracePeriodSeconds (%d)" $drain $needed $tgps) }}
{{- end }}
{{- if and (not .Values.istio.gateway.create) (not .Values.istio.gateway.existing) }}
{{- fail "istio.gateway.existing (namespace/name) is required when istio.gateway.create is false" }}
{{- end }}
{{- if and .Values.istio.gateway.create .Values.istio.gateway.tls.enabled (not .Values.istio.gateway.tls.credentialName) }}
{{- fail "istio.gateway.tls.credentialName is required when TLS is on" }}
{{- end }}
{{- if and .Values.istio.authorizationPolicy.enabled (not .Values.istio.requestAuthentication.enabled) }}
{{- fail "istio.authorizationPolicy needs istio.requestAuthentication.enabled (it admits requests with a valid JWT)" }}
{{- end }}
{{- end }}
{{- if and .Values.sources (not .Values.migration.enabled) }}
{{- fail "sources need migration.enabled: the migration Job applies them (or leave sources empty and run `python -m app sources apply` yourself)" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}

{{/*
With istio.enabled and istio.requireCrds: the cluster must serve the Istio APIs the templates render
(networking.istio.io/v1: Gateway, VirtualService, DestinationRule; security.istio.io/v1: PeerAuthentication,
RequestAuthentication, AuthorizationPolicy), else one line instead of Helm's "no matches for kind".
helm install/upgrade read them from the cluster; helm template knows only its --api-versions.
*/}}
{{- define "aws-s3-service.requireIstioApis" -}}
{{- $istio := .Values.istio }}
{{- if $istio.requireCrds }}
{{- $needed := list "networking.istio.io/v1" }}
{{- if or $istio.peerAuthentication.enabled $istio.requestAuthentication.enabled $istio.authorizationPolicy.enabled }}
{{- $needed = append $needed "security.istio.io/v1" }}
{{- end }}
{{- $missing := list }}
{{- range $api := $needed }}
{{- if not ($.Capabilities.APIVersions.Has $api) }}
{{- $missing = append $missing $api }}
{{- end }}
{{- end }}
{{- if $missing }}
{{- fail (printf "istio.enabled is true but this cluster has no Istio CRDs (%s): install Istio (1.22 or newer), or set --set istio.enabled=false (offline helm template: add --api-versions %s, or set istio.requireCrds=false)" (join ", " $missing) (join " --api-versions " $missing)) }}
{{- end }}
{{- end }}
{{- end }}
