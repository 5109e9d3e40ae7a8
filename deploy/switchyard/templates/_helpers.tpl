{{- define "switchyard.name" -}}switchyard{{- end -}}

{{- define "switchyard.fullname" -}}
{{- if contains "switchyard" .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-switchyard" .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "switchyard.labels" -}}
app.kubernetes.io/name: switchyard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "switchyard.selector" -}}
app.kubernetes.io/name: switchyard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "switchyard.envoySelector" -}}
app.kubernetes.io/name: switchyard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: envoy
{{- end -}}

{{- define "switchyard.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- /* Read what translation needs, write only status and Events. */ -}}
{{- define "switchyard.namespacedRules" -}}
- apiGroups: ["gateway.networking.k8s.io"]
  resources: [gateways, httproutes, referencegrants]
  verbs: [get, list, watch]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: [gateways/status, httproutes/status]
  verbs: [get, update, patch]
- apiGroups: ["switchyard.dev"]
  resources: [backends]
  verbs: [get, list, watch]
- apiGroups: ["switchyard.dev"]
  resources: [backends/status]
  verbs: [get, update, patch]
- apiGroups: [""]
  resources: [secrets, services]
  verbs: [get, list, watch]
- apiGroups: ["discovery.k8s.io"]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: ["", "events.k8s.io"]
  resources: [events]
  verbs: [create, get, patch, update]
{{- end }}
