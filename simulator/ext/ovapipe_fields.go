package simulator

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net/http"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

// Debian's CustomFieldsManager.SetField (and VirtualMachine.SetCustomValue, which calls it)
// appends a value on every call, so an entity ends up with every value a key ever had.
// vCenter keeps one value per key: setting it again replaces it. The registry cannot hold
// another type for the manager (Debian asserts *CustomFieldsManager), so these two calls are
// answered here, before Debian's dispatch, with the same session check and response shape.

// ovapipeService is the running service, for building a request Context as ServeSDK does.
var ovapipeService *Service

// ovapipeServeFieldCall answers SetField and SetCustomValue; false lets Debian answer (for
// other methods, a request it cannot decode, or a caller that is not logged in).
func ovapipeServeFieldCall(w http.ResponseWriter, r *http.Request, method string, body []byte) bool {
	// pyVmomi and govc send SetCustomValue as "setCustomValue", as the WSDL names it.
	if (method != "SetField" && method != "SetCustomValue" && method != "setCustomValue") || ovapipeService == nil {
		return false
	}
	ctx := &Context{req: r, res: w, svc: ovapipeService, Map: Map, Context: context.Background()}
	ctx.Map.WithLock(ovapipeService.sm, ctx.mapSession)
	if ctx.Session == nil {
		return false
	}
	call, err := UnmarshalBody(ctx.Map.typeFunc, body)
	if err != nil {
		return false
	}
	ctx.Header = call.Header
	var res soap.HasFault
	switch req := call.Body.(type) {
	case *types.SetField:
		res = ovapipeSetField(ctx, req.Entity, req.Key, req.Value, &methods.SetFieldBody{Res: &types.SetFieldResponse{}})
	case *types.SetCustomValue:
		cfm := ctx.Map.CustomFieldsManager()
		_, field := cfm.findByNameType(req.Key, req.This.Type)
		if field == nil {
			res = &methods.SetCustomValueBody{Fault_: Fault("", &types.InvalidArgument{InvalidProperty: "key"})}
			break
		}
		res = ovapipeSetField(ctx, req.This, field.Key, req.Value, &methods.SetCustomValueBody{Res: &types.SetCustomValueResponse{}})
	default:
		return false
	}
	if fault := res.Fault(); fault != nil {
		ovapipeWriteFault(w, fault)
		return true
	}
	var out bytes.Buffer
	fmt.Fprint(&out, xml.Header)
	e := xml.NewEncoder(&out)
	err = e.Encode(&soapEnvelope{
		Enc:  "http://schemas.xmlsoap.org/soap/encoding/",
		Env:  "http://schemas.xmlsoap.org/soap/envelope/",
		XSD:  "http://www.w3.org/2001/XMLSchema",
		XSI:  "http://www.w3.org/2001/XMLSchema-instance",
		Body: &response{ctx.Map.Namespace, res},
	})
	if err == nil {
		err = e.Flush()
	}
	if err != nil {
		log.Printf("error encoding %s response: %s", method, err)
		w.WriteHeader(http.StatusInternalServerError)
		return true
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out.Bytes())
	return true
}

// ovapipeSetField sets the entity's value for key, replacing the one it had; answers ok on
// success (a body with its Res set) or a body carrying the fault.
func ovapipeSetField(ctx *Context, ref types.ManagedObjectReference, key int32, value string, ok soap.HasFault) soap.HasFault {
	fail := func(f *soap.Fault) soap.HasFault { return &ovapipeFaultBody{f} }
	cfm := ctx.Map.CustomFieldsManager()
	var field *types.CustomFieldDef
	ctx.Map.WithLock(cfm, func() {
		if _, found := cfm.findByKey(key); found != nil {
			copied := *found
			field = &copied
		}
	})
	if field == nil {
		return fail(Fault("", &types.InvalidArgument{InvalidProperty: "key"}))
	}
	obj, isEntity := ctx.Map.Get(ref).(mo.Entity)
	if !isEntity {
		return fail(Fault(fmt.Sprintf("managed object not found: %s", ref), &types.ManagedObjectNotFound{Obj: ref}))
	}
	if field.ManagedObjectType != "" && field.ManagedObjectType != ref.Type {
		return fail(Fault(fmt.Sprintf("custom field %d applies to %s, not to %s", key, field.ManagedObjectType, ref.Type),
			&types.InvalidArgument{InvalidProperty: "entity"}))
	}
	newValue := &types.CustomFieldStringValue{CustomFieldValue: types.CustomFieldValue{Key: key}, Value: value}
	replaced := func(values []types.BaseCustomFieldValue) []types.BaseCustomFieldValue {
		out := make([]types.BaseCustomFieldValue, 0, len(values)+1)
		set := false
		for _, v := range values {
			switch {
			case v.GetCustomFieldValue().Key != key:
				out = append(out, v)
			case !set:
				out = append(out, newValue)
				set = true
			}
		}
		if !set {
			out = append(out, newValue)
		}
		return out
	}
	entity := obj.Entity()
	ctx.WithLock(obj, func() {
		entity.CustomValue = replaced(entity.CustomValue)
		entity.Value = replaced(entity.Value)
	})
	return ok
}

type ovapipeFaultBody struct{ fault *soap.Fault }

func (b *ovapipeFaultBody) Fault() *soap.Fault { return b.fault }
