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

{{- /* Prefix of the xDS certificate Secrets the controller manages: <prefix>-{ca,controller,envoy,ai-extension}. */ -}}
{{- define "switchyard.xdsSecrets" -}}
{{ include "switchyard.fullname" . }}-xds
{{- end -}}

{{- /* The names Envoy and the AI extension dial the controller by: its certificate names each. */ -}}
{{- define "switchyard.xdsDnsNames" -}}
{{- $fullname := include "switchyard.fullname" . -}}
{{ $fullname }}.{{ .Release.Namespace }}.svc,{{ $fullname }}.{{ .Release.Namespace }}.svc.cluster.local,{{ $fullname }}.{{ .Release.Namespace }},{{ $fullname }}
{{- end -}}

{{- /* Provider keys never cross plaintext xDS: the chart's AI extension needs mTLS. */ -}}
{{- define "switchyard.checkValues" -}}
{{- if and .Values.aiExtension.enabled (not .Values.xds.tls.enabled) -}}
{{- fail "aiExtension.enabled needs xds.tls.enabled: provider keys are served only to an AI extension that authenticates with its mTLS certificate (set xds.tls.enabled=true, or aiExtension.enabled=false and run the extension yourself)" -}}
{{- end -}}
{{- /* Envoy and the AI extension (or the drain sidecar) share the pod's network: each port once. */ -}}
{{- $ports := list (int .Values.envoy.adminPort) (int .Values.envoy.readyPort) -}}
{{- if .Values.aiExtension.enabled }}{{ $ports = concat $ports (list (int .Values.aiExtension.port) (int .Values.aiExtension.metricsPort)) }}
{{- else if .Values.envoy.drain.sidecar.enabled }}{{ $ports = append $ports (int .Values.envoy.drain.sidecar.port) }}{{ end -}}
{{- if ne (len $ports) (len (uniq $ports)) -}}
{{- fail (printf "envoy.adminPort, envoy.readyPort, aiExtension.port and aiExtension.metricsPort (or, without the AI extension, envoy.drain.sidecar.port) share one pod and must differ, got %v" $ports) -}}
{{- end -}}
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
