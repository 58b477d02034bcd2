// ttrpc-call: a ttRPC client for the Attestation Agent and Confidential Data Hub services, built
// on containerd's Go ttrpc module and Google's protobuf runtime (not on anything in this
// repository), so the e2e tests check cdh against an independent implementation of the wire
// protocol.
//
//	ttrpc-call -socket PATH -service SERVICE -method METHOD [-json REQUEST] [-timeout 60s]
//	           [-server-timeout D]
//
// -timeout is the call's context deadline, which the ttrpc client sends as the request's
// timeout_nano (and enforces itself). -server-timeout overrides the timeout_nano sent, through a
// client interceptor, so that the server's own handling of the deadline is what the caller sees.
//
// The request is protojson text of the method's input message (bytes fields in base64). On
// success it prints the response as protojson (all fields, bytes in base64) and exits 0; on a
// ttRPC error it prints {"code":N,"message":"..."} and exits 3; other failures exit 1.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

type fieldSpec struct {
	name     string
	num      int32
	typ      descriptorpb.FieldDescriptorProto_Type
	repeated bool
	optional bool   // proto3 `optional` (explicit presence)
	typeName string // message fields
}

type msgSpec struct {
	name   string
	fields []fieldSpec
	nested []msgSpec
	mapEnt bool
}

const (
	tString = descriptorpb.FieldDescriptorProto_TYPE_STRING
	tBytes  = descriptorpb.FieldDescriptorProto_TYPE_BYTES
	tUint64 = descriptorpb.FieldDescriptorProto_TYPE_UINT64
	tMsg    = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
)

func buildMsg(m msgSpec) *descriptorpb.DescriptorProto {
	d := &descriptorpb.DescriptorProto{Name: &m.name}
	for _, f := range m.fields {
		f := f
		label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		if f.repeated {
			label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		}
		typ := f.typ
		fd := &descriptorpb.FieldDescriptorProto{Name: &f.name, Number: &f.num, Type: &typ, Label: &label,
			JsonName: &f.name}
		if f.typeName != "" {
			tn := f.typeName
			fd.TypeName = &tn
		}
		if f.optional {
			idx := int32(len(d.OneofDecl))
			on := "_" + f.name
			d.OneofDecl = append(d.OneofDecl, &descriptorpb.OneofDescriptorProto{Name: &on})
			fd.OneofIndex = &idx
			t := true
			fd.Proto3Optional = &t
		}
		d.Field = append(d.Field, fd)
	}
	for _, n := range m.nested {
		d.NestedType = append(d.NestedType, buildMsg(n))
	}
	if m.mapEnt {
		t := true
		d.Options = &descriptorpb.MessageOptions{MapEntry: &t}
	}
	return d
}

type rpc struct{ service, method, in, out string }

func file(name, pkg string, msgs []msgSpec, rpcs []rpc) protoreflect.FileDescriptor {
	syntax := "proto3"
	fdp := &descriptorpb.FileDescriptorProto{Name: &name, Package: &pkg, Syntax: &syntax}
	for _, m := range msgs {
		fdp.MessageType = append(fdp.MessageType, buildMsg(m))
	}
	services := map[string]*descriptorpb.ServiceDescriptorProto{}
	for _, r := range rpcs {
		r := r
		s, ok := services[r.service]
		if !ok {
			sn := r.service
			s = &descriptorpb.ServiceDescriptorProto{Name: &sn}
			services[r.service] = s
			fdp.Service = append(fdp.Service, s)
		}
		in, out := "."+pkg+"."+r.in, "."+pkg+"."+r.out
		s.Method = append(s.Method, &descriptorpb.MethodDescriptorProto{Name: &r.method, InputType: &in,
			OutputType: &out})
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		panic(fmt.Sprintf("descriptor %s: %v", name, err))
	}
	return fd
}

// The upstream protos (guest-components protos/protos/...), field numbers as published.
func descriptors() []protoreflect.FileDescriptor {
	aa := file("attestation-agent.proto", "attestation_agent", []msgSpec{
		{name: "GetEvidenceRequest", fields: []fieldSpec{{name: "RuntimeData", num: 1, typ: tBytes}}},
		{name: "GetAdditionalEvidenceRequest", fields: []fieldSpec{{name: "RuntimeData", num: 1, typ: tBytes}}},
		{name: "GetEvidenceResponse", fields: []fieldSpec{{name: "Evidence", num: 1, typ: tBytes}}},
		{name: "GetTokenRequest", fields: []fieldSpec{{name: "TokenType", num: 1, typ: tString}}},
		{name: "GetTokenResponse", fields: []fieldSpec{{name: "Token", num: 1, typ: tBytes}}},
		{name: "ExtendRuntimeMeasurementRequest", fields: []fieldSpec{
			{name: "Domain", num: 1, typ: tString}, {name: "Operation", num: 2, typ: tString},
			{name: "Content", num: 3, typ: tString}, {name: "RegisterIndex", num: 4, typ: tUint64, optional: true}}},
		{name: "ExtendRuntimeMeasurementResponse"},
		{name: "BindInitDataRequest", fields: []fieldSpec{{name: "Digest", num: 1, typ: tBytes}}},
		{name: "BindInitDataResponse"},
		{name: "GetTeeTypeRequest"},
		{name: "GetTeeTypeResponse", fields: []fieldSpec{{name: "tee", num: 1, typ: tString}}},
	}, []rpc{
		{"AttestationAgentService", "GetEvidence", "GetEvidenceRequest", "GetEvidenceResponse"},
		{"AttestationAgentService", "GetAdditionalEvidence", "GetAdditionalEvidenceRequest", "GetEvidenceResponse"},
		{"AttestationAgentService", "GetToken", "GetTokenRequest", "GetTokenResponse"},
		{"AttestationAgentService", "ExtendRuntimeMeasurement", "ExtendRuntimeMeasurementRequest",
			"ExtendRuntimeMeasurementResponse"},
		{"AttestationAgentService", "BindInitData", "BindInitDataRequest", "BindInitDataResponse"},
		{"AttestationAgentService", "GetTeeType", "GetTeeTypeRequest", "GetTeeTypeResponse"},
	})
	api := file("api.proto", "api", []msgSpec{
		{name: "UnsealSecretInput", fields: []fieldSpec{{name: "secret", num: 1, typ: tBytes}}},
		{name: "UnsealSecretOutput", fields: []fieldSpec{{name: "plaintext", num: 1, typ: tBytes}}},
		{name: "GetResourceRequest", fields: []fieldSpec{{name: "ResourcePath", num: 1, typ: tString}}},
		{name: "GetResourceResponse", fields: []fieldSpec{{name: "Resource", num: 1, typ: tBytes}}},
		{name: "SecureMountRequest", fields: []fieldSpec{
			{name: "volume_type", num: 1, typ: tString},
			{name: "options", num: 2, typ: tMsg, repeated: true, typeName: ".api.SecureMountRequest.OptionsEntry"},
			{name: "flags", num: 3, typ: tString, repeated: true},
			{name: "mount_point", num: 4, typ: tString}},
			nested: []msgSpec{{name: "OptionsEntry", mapEnt: true, fields: []fieldSpec{
				{name: "key", num: 1, typ: tString}, {name: "value", num: 2, typ: tString}}}}},
		{name: "SecureMountResponse"},
		{name: "ImagePullRequest", fields: []fieldSpec{{name: "image_url", num: 1, typ: tString},
			{name: "bundle_path", num: 2, typ: tString}}},
		{name: "ImagePullResponse", fields: []fieldSpec{{name: "manifest_digest", num: 1, typ: tString}}},
	}, []rpc{
		{"SealedSecretService", "UnsealSecret", "UnsealSecretInput", "UnsealSecretOutput"},
		{"GetResourceService", "GetResource", "GetResourceRequest", "GetResourceResponse"},
		{"SecureMountService", "SecureMount", "SecureMountRequest", "SecureMountResponse"},
		{"ImagePullService", "PullImage", "ImagePullRequest", "ImagePullResponse"},
	})
	kp := file("keyprovider.proto", "keyprovider", []msgSpec{
		{name: "KeyProviderKeyWrapProtocolInput", fields: []fieldSpec{{name: "KeyProviderKeyWrapProtocolInput", num: 1, typ: tBytes}}},
		{name: "KeyProviderKeyWrapProtocolOutput", fields: []fieldSpec{{name: "KeyProviderKeyWrapProtocolOutput", num: 1, typ: tBytes}}},
	}, []rpc{
		{"KeyProviderService", "WrapKey", "KeyProviderKeyWrapProtocolInput", "KeyProviderKeyWrapProtocolOutput"},
		{"KeyProviderService", "UnWrapKey", "KeyProviderKeyWrapProtocolInput", "KeyProviderKeyWrapProtocolOutput"},
	})
	return []protoreflect.FileDescriptor{aa, api, kp}
}

func findMethod(service, method string) (protoreflect.MethodDescriptor, error) {
	for _, fd := range descriptors() {
		sds := fd.Services()
		for i := 0; i < sds.Len(); i++ {
			if string(sds.Get(i).FullName()) != service {
				continue
			}
			if md := sds.Get(i).Methods().ByName(protoreflect.Name(method)); md != nil {
				return md, nil
			}
		}
	}
	return nil, fmt.Errorf("no method %s/%s in the AA and CDH protos", service, method)
}

func main() {
	socket := flag.String("socket", "", "unix socket path")
	service := flag.String("service", "", "service, e.g. api.GetResourceService")
	method := flag.String("method", "", "method, e.g. GetResource")
	reqJSON := flag.String("json", "{}", "request message as protojson")
	timeout := flag.Duration("timeout", 60*time.Second, "call timeout")
	serverTimeout := flag.Duration("server-timeout", 0, "timeout_nano to send instead of the context's")
	flag.Parse()
	if *socket == "" || *service == "" || *method == "" {
		flag.Usage()
		os.Exit(2)
	}
	md, err := findMethod(*service, *method)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	req := dynamicpb.NewMessage(md.Input())
	if err := protojson.Unmarshal([]byte(*reqJSON), req); err != nil {
		fmt.Fprintf(os.Stderr, "request: %v\n", err)
		os.Exit(1)
	}
	conn, err := net.Dial("unix", *socket)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dial: %v\n", err)
		os.Exit(1)
	}
	var opts []ttrpc.ClientOpts
	if *serverTimeout != 0 {
		opts = append(opts, ttrpc.WithUnaryClientInterceptor(func(ctx context.Context, req *ttrpc.Request,
			resp *ttrpc.Response, _ *ttrpc.UnaryClientInfo, invoker ttrpc.Invoker) error {
			req.TimeoutNano = serverTimeout.Nanoseconds()
			return invoker(ctx, req, resp)
		}))
	}
	client := ttrpc.NewClient(conn, opts...)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp := dynamicpb.NewMessage(md.Output())
	if err := client.Call(ctx, *service, *method, req, resp); err != nil {
		if st, ok := status.FromError(err); ok {
			out, _ := json.Marshal(map[string]any{"code": int(st.Code()), "message": st.Message()})
			fmt.Println(string(out))
			os.Exit(3)
		}
		fmt.Fprintf(os.Stderr, "call: %v\n", err)
		os.Exit(1)
	}
	out, err := protojson.MarshalOptions{EmitUnpopulated: true, UseProtoNames: true}.Marshal(resp)
	if err != nil {
		fmt.Fprintf(os.Stderr, "response: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
