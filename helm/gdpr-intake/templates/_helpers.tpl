{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "gdpr-intake.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: release name plus chart name unless the release
name already holds it. Truncated to 63 characters.
*/}}
{{- define "gdpr-intake.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of a resource that belongs to the release, with a suffix; the prefix is
shortened so the whole stays within 63 characters.
Usage: include "gdpr-intake.suffixed" (list . "migrations")
*/}}
{{- define "gdpr-intake.suffixed" -}}
{{- $ctx := index . 0 -}}
{{- $suffix := index . 1 }}
{{- $max := sub 62 (len $suffix) | int }}
{{- printf "%s-%s" (include "gdpr-intake.fullname" $ctx | trunc $max | trimSuffix "-") $suffix }}
{{- end }}

{{/*
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "gdpr-intake.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Version of the application that runs: the image tag, or the appVersion.
*/}}
{{- define "gdpr-intake.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels. The component is part of the selector so that the
migration Job's pods are never picked up by the Service, the PDB or the
autoscaler of the server.
Usage: include "gdpr-intake.selectorLabels" (list . "server")
*/}}
{{- define "gdpr-intake.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "gdpr-intake.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
Kubernetes recommended labels plus helm.sh/chart and commonLabels.
Usage: include "gdpr-intake.labels" (list . "server")
*/}}
{{- define "gdpr-intake.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ include "gdpr-intake.chart" $ctx }}
{{ include "gdpr-intake.selectorLabels" . }}
app.kubernetes.io/version: {{ include "gdpr-intake.version" $ctx | quote }}
app.kubernetes.io/part-of: {{ $ctx.Values.partOf }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels that select every pod of the release (server and migrations); used
by the NetworkPolicy so that the migration Job gets the same egress.
*/}}
{{- define "gdpr-intake.releasePodLabels" -}}
app.kubernetes.io/name: {{ include "gdpr-intake.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount of the server.
*/}}
{{- define "gdpr-intake.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gdpr-intake.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
ServiceAccount of the migration Job: a hook ServiceAccount created before
the Job, since on install the server's one does not exist yet.
*/}}
{{- define "gdpr-intake.migrationServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- include "gdpr-intake.suffixed" (list . "migrations") }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference (digest wins over tag).
*/}}
{{- define "gdpr-intake.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
"true" when the database is SQLite.
*/}}
{{- define "gdpr-intake.isSqlite" -}}
{{- if eq .Values.database.type "sqlite" }}true{{ end }}
{{- end }}

{{/*
Effective migration mode: SQLite forces startup.
*/}}
{{- define "gdpr-intake.migrationsMode" -}}
{{- if include "gdpr-intake.isSqlite" . }}startup{{ else }}{{ .Values.migrations.mode }}{{ end }}
{{- end }}

{{/*
Secret the pods read from: the existing one or the chart's.
*/}}
{{- define "gdpr-intake.secretName" -}}
{{- default (include "gdpr-intake.fullname" .) .Values.existingSecret.name }}
{{- end }}

{{/*
Hook Secret that carries the database URL to the migration Job (the
chart's Secret does not exist yet when a pre-install hook runs).
*/}}
{{- define "gdpr-intake.migrationSecretName" -}}
{{- if .Values.existingSecret.name }}
{{- .Values.existingSecret.name }}
{{- else }}
{{- include "gdpr-intake.suffixed" (list . "migrations") }}
{{- end }}
{{- end }}

{{/*
Key names inside the Secret. The chart's own Secret uses fixed names; an
existing Secret uses existingSecret.keys.*; an empty result means "absent".
*/}}
{{- define "gdpr-intake.databaseUrlKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.keys.databaseUrl }}{{ else if .Values.database.url }}database-url{{ end }}
{{- end }}

{{- define "gdpr-intake.jwksKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.keys.jwks }}{{ else if .Values.auth.jwks }}jwks.json{{ end }}
{{- end }}

{{- define "gdpr-intake.auditKeyKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.keys.auditKey }}{{ else if .Values.encryption.auditKey }}audit.key{{ end }}
{{- end }}

{{- define "gdpr-intake.dataKeyKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.keys.dataKey }}{{ else if .Values.encryption.dataKey }}data.key{{ end }}
{{- end }}

{{- define "gdpr-intake.evidenceKeyKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.keys.evidenceKey }}{{ else if .Values.encryption.evidenceKey }}evidence.key{{ end }}
{{- end }}

{{/*
Mount point of the secret files.
*/}}
{{- define "gdpr-intake.secretDir" -}}/etc/gdpr-intake/secrets{{- end }}

{{/*
Data dir inside the container (also the image's default).
*/}}
{{- define "gdpr-intake.dataDir" -}}/var/lib/gdpr-intake{{- end }}

{{/*
Name of the data PVC.
*/}}
{{- define "gdpr-intake.pvcName" -}}
{{- default (include "gdpr-intake.suffixed" (list . "data")) .Values.persistence.existingClaim }}
{{- end }}

{{/*
"true" when the data dir is on a PVC (SQLite with persistence).
*/}}
{{- define "gdpr-intake.usePvc" -}}
{{- if and (include "gdpr-intake.isSqlite" .) .Values.persistence.enabled }}true{{ end }}
{{- end }}

{{/*
Checks that values.schema.json cannot express. Rendered (as nothing) by the
Deployment so that every install runs them.
*/}}
{{- define "gdpr-intake.validate" -}}
{{- if and (not (include "gdpr-intake.jwksKey" .)) (not .Values.auth.devKeys) }}
{{- fail "gdpr-intake: a JWKS is required: set auth.jwks, or existingSecret.name with existingSecret.keys.jwks (auth.devKeys=true only for development)" }}
{{- end }}
{{- if .Values.auth.jwks }}
{{- $jwks := fromJson .Values.auth.jwks }}
{{- if or (hasKey $jwks "Error") (not (kindIs "slice" (get $jwks "keys"))) }}
{{- fail "gdpr-intake: auth.jwks must be a JSON object with a \"keys\" array" }}
{{- end }}
{{- end }}
{{- if and (eq .Values.database.type "postgres") (not (include "gdpr-intake.databaseUrlKey" .)) }}
{{- fail "gdpr-intake: database.type=postgres needs database.url, or existingSecret.name with existingSecret.keys.databaseUrl" }}
{{- end }}
{{- if and (include "gdpr-intake.isSqlite" .) (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) }}
{{- fail "gdpr-intake: SQLite runs a single replica; use database.type=postgres to scale" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "gdpr-intake: autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.grpcRoute.enabled (not .Values.grpcRoute.parentRefs) }}
{{- fail "gdpr-intake: grpcRoute.enabled needs grpcRoute.parentRefs" }}
{{- end }}
{{- end }}

{{/*
Environment shared by the server and the migration Job. DATABASE_URL always
comes from a Secret, never from a plain value or a ConfigMap.
Usage: include "gdpr-intake.commonEnv" (list . $secretName)
*/}}
{{- define "gdpr-intake.commonEnv" -}}
{{- $ctx := index . 0 -}}
- name: GDPR_INTAKE_DATA_DIR
  value: {{ include "gdpr-intake.dataDir" $ctx | quote }}
- name: GDPR_INTAKE_LOG_FORMAT
  value: {{ $ctx.Values.server.logFormat | quote }}
- name: RUST_LOG
  value: {{ $ctx.Values.server.logLevel | quote }}
{{- if eq $ctx.Values.database.type "postgres" }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ index . 1 }}
      key: {{ include "gdpr-intake.databaseUrlKey" $ctx }}
{{- end }}
{{- end }}

{{/*
Kubernetes resource attributes plus otel.resourceAttributes, for
OTEL_RESOURCE_ATTRIBUTES ($(VAR) is expanded by the kubelet).
*/}}
{{- define "gdpr-intake.otelResourceAttributes" -}}
{{- $attrs := list "k8s.namespace.name=$(GDPR_INTAKE_POD_NAMESPACE)" "k8s.pod.name=$(GDPR_INTAKE_POD_NAME)" "k8s.node.name=$(GDPR_INTAKE_NODE_NAME)" (printf "k8s.deployment.name=%s" (include "gdpr-intake.fullname" .)) (printf "service.version=%s" (include "gdpr-intake.version" .)) }}
{{- range $k, $v := .Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%v" $k $v) }}
{{- end }}
{{- join "," $attrs }}
{{- end }}

{{/*
Hardened pod spec parts shared by the Deployment and the Job.
*/}}
{{- define "gdpr-intake.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
