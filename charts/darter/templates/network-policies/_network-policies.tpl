{{/*
Sources of the NetworkPolicies (NetworkPolicyPeer lists).
*/}}

{{/* Pods of one component: (dict "root" $ "component" "scheduler") */}}
{{- define "darter.np.pods" -}}
- podSelector:
    matchLabels:
      {{- with (include "darter.selectorLabels" . | trim) }}{{ . | nindent 6 }}{{ end }}
{{- end }}

{{/* Where dfdaemons connect from: their pods, or their nodes with host network. */}}
{{- define "darter.np.peers" -}}
{{- if .Values.dfdaemon.hostNetwork }}
{{- range .Values.networkPolicy.nodeCIDRs }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- else }}
{{- include "darter.np.pods" (dict "root" . "component" "dfdaemon") }}
{{- end }}
{{- end }}

{{/* Prometheus: pods of networkPolicy.metricsNamespace. */}}
{{- define "darter.np.metrics" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .Values.networkPolicy.metricsNamespace }}
{{- end }}
