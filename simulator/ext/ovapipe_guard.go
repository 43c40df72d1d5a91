package simulator

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"path"
	"reflect"
	"regexp"
	"runtime/debug"
	"strings"
	"unicode/utf8"

	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Debian's simulator takes any name and any datastore path. A name with '/' or of 300
// characters panics its CreateVM/ImportVApp path after the VM was registered (a nameless VM
// stays behind), '../' in a name or datastore path writes files outside the datastore folder,
// and a panic in any handler drops the client's connection. vCenter answers a fault for each.
// ovapipeGuardHandler checks every SOAP request before dispatch and turns a panic into a
// SystemError fault.

const ovapipeMaxNameLength = 80

var ovapipeDatastorePathRE = regexp.MustCompile(`^\[([^\]]*)\]\s*(.*)$`)

// ovapipeNameProblem says why vCenter would refuse an entity name, or "".
func ovapipeNameProblem(name string) string {
	switch {
	case name == "":
		return "it is empty"
	case utf8.RuneCountInString(name) > ovapipeMaxNameLength:
		return fmt.Sprintf("it has more than %d characters", ovapipeMaxNameLength)
	case strings.Contains(name, "/"):
		return "it contains '/'"
	case name == "." || name == "..":
		return "it is '.' or '..'"
	}
	return ""
}

// ovapipeRequestNames lists the entity names a request asks to create or set.
func ovapipeRequestNames(body interface{}) []string {
	switch req := body.(type) {
	case *types.CreateVM_Task:
		return []string{req.Config.Name}
	case *types.CloneVM_Task:
		return []string{req.Name}
	case *types.Rename_Task:
		return []string{req.NewName}
	case *types.CreateFolder:
		return []string{req.Name}
	case *types.CreateResourcePool:
		return []string{req.Name}
	case *types.CreateClusterEx:
		return []string{req.Name}
	case *types.CreateDatacenter:
		return []string{req.Name}
	case *types.CreateVApp:
		return []string{req.Name}
	case *types.RegisterVM_Task:
		if req.Name != "" {
			return []string{req.Name}
		}
	case *types.ImportVApp:
		return ovapipeImportNames(req.Spec)
	}
	return nil
}

func ovapipeImportNames(spec types.BaseImportSpec) []string {
	switch s := spec.(type) {
	case *types.VirtualMachineImportSpec:
		return []string{s.ConfigSpec.Name}
	case *types.VirtualAppImportSpec:
		names := []string{s.Name}
		for _, child := range s.Child {
			names = append(names, ovapipeImportNames(child)...)
		}
		return names
	}
	return nil
}

// ovapipeEscapingPath returns the first datastore path ("[ds] dir/file") in the request that
// would leave its datastore folder, or "".
func ovapipeEscapingPath(v reflect.Value, depth int) string {
	if depth > 40 || !v.IsValid() {
		return ""
	}
	switch v.Kind() {
	case reflect.Ptr, reflect.Interface:
		if v.IsNil() {
			return ""
		}
		return ovapipeEscapingPath(v.Elem(), depth+1)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if found := ovapipeEscapingPath(v.Field(i), depth+1); found != "" {
				return found
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return ""
		}
		for i := 0; i < v.Len(); i++ {
			if found := ovapipeEscapingPath(v.Index(i), depth+1); found != "" {
				return found
			}
		}
	case reflect.String:
		s := v.String()
		if m := ovapipeDatastorePathRE.FindStringSubmatch(s); m != nil {
			rel := strings.TrimSpace(m[2])
			cleaned := path.Clean(rel)
			if strings.HasPrefix(rel, "/") || cleaned == ".." || strings.HasPrefix(cleaned, "../") {
				return s
			}
		}
	}
	return ""
}

// ovapipeRefusal is the fault vCenter gives for the request, or nil to dispatch it.
func ovapipeRefusal(method *Method) *soap.Fault {
	for _, name := range ovapipeRequestNames(method.Body) {
		if why := ovapipeNameProblem(name); why != "" {
			shown := name
			if len(shown) > 100 {
				shown = shown[:100] + "..."
			}
			return Fault(fmt.Sprintf("The name '%s' is invalid: %s", shown, why),
				&types.InvalidName{Name: name, Entity: &method.This})
		}
	}
	if bad := ovapipeEscapingPath(reflect.ValueOf(method.Body), 0); bad != "" {
		return Fault(fmt.Sprintf("Invalid datastore path '%s': it leaves the datastore folder", bad),
			&types.InvalidDatastorePath{DatastorePath: bad})
	}
	return nil
}

type ovapipeGuardWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *ovapipeGuardWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *ovapipeGuardWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// ovapipeGuardHandler refuses bad names and escaping datastore paths before dispatch, and
// answers a SystemError fault instead of dropping the connection when a handler panics.
func ovapipeGuardHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		guarded := &ovapipeGuardWriter{ResponseWriter: w}
		defer func() {
			if recovered := recover(); recovered != nil {
				if recovered == http.ErrAbortHandler {
					panic(recovered)
				}
				log.Printf("panic serving %s %s: %v\n%s", r.Method, r.URL.Path, recovered, debug.Stack())
				if !guarded.wrote {
					msg := fmt.Sprintf("simulator panic: %v", recovered)
					ovapipeWriteFault(guarded, Fault(msg, &types.SystemError{Reason: msg}))
				}
			}
		}()
		if r.Method == http.MethodPost && r.URL.Path == Map.Path {
			body, err := io.ReadAll(io.LimitReader(r.Body, ovapipeSOAPLimit))
			_ = r.Body.Close()
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if method, err := UnmarshalBody(Map.typeFunc, body); err == nil {
				if fault := ovapipeRefusal(method); fault != nil {
					log.Printf("soap %s: refused: %s", method.Name, fault.String)
					ovapipeWriteFault(guarded, fault)
					return
				}
			}
		}
		next.ServeHTTP(guarded, r)
	})
}
