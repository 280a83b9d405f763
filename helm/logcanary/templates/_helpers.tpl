{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "logcanary.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. A StatefulSet's pods are named <fullname>-<ordinal>, which
also becomes a label value, so keep some room: 52 characters.
*/}}
{{- define "logcanary.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "logcanary.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "logcanary.labels" -}}
helm.sh/chart: {{ include "logcanary.chart" . }}
{{ include "logcanary.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels (immutable on a StatefulSet: never add to these).
*/}}
{{- define "logcanary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logcanary.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Service account name.
*/}}
{{- define "logcanary.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "logcanary.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference: repository:tag, or repository@digest, or both.
*/}}
{{- define "logcanary.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if .Values.image.digest }}
{{- if .Values.image.tag }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- end }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Whether Kafka uses SASL (and so needs the SASL password).
*/}}
{{- define "logcanary.kafkaSasl" -}}
{{- if hasPrefix "SASL_" (.Values.kafka.securityProtocol | default "PLAINTEXT" | upper) }}true{{ end }}
{{- end }}

{{/*
Whether the chart creates a Secret of its own: no existingSecret and some secret value given.
*/}}
{{- define "logcanary.createSecret" -}}
{{- if and (not .Values.existingSecret) (or .Values.apiToken .Values.kafka.sasl.password .Values.store.url) }}true{{ end }}
{{- end }}

{{/*
Whether the state is in PostgreSQL (LOGCANARY_STORE_URL from existingSecret, or store.url in the chart's Secret).
*/}}
{{- define "logcanary.postgresStore" -}}
{{- if .Values.existingSecret }}
{{- if .Values.existingSecretKeys.storeUrl }}true{{ end }}
{{- else if .Values.store.url }}true{{ end }}
{{- end }}

{{/*
The Kafka SASL mechanism as Kafka spells it (upper case), as the protocol is normalised.
*/}}
{{- define "logcanary.kafkaSaslMechanism" -}}
{{- .Values.kafka.sasl.mechanism | default "" | upper }}
{{- end }}

{{/*
Labels that pick the `helm test` pod (let in by the NetworkPolicy). Not the selector labels: the Services, the
PodDisruptionBudget and the NetworkPolicy must not take it for a logcanary pod.
*/}}
{{- define "logcanary.testSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-test" (include "logcanary.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
{{- end }}

{{/*
Name of the chart's own Secret.
*/}}
{{- define "logcanary.secretName" -}}
{{- include "logcanary.fullname" . }}
{{- end }}

{{/*
Headless Service name (the StatefulSet's serviceName).
*/}}
{{- define "logcanary.headlessServiceName" -}}
{{- printf "%s-headless" (include "logcanary.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Mount path of the Kafka TLS Secret.
*/}}
{{- define "logcanary.kafkaTlsDir" -}}
/etc/logcanary/kafka-tls
{{- end }}
