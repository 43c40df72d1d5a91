package simulator

import (
	"bytes"
	"fmt"
	"log"
	"net/http"
	"regexp"
	"strconv"

	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

// Debian's CreateVM_Task accepts any vmx-NN. A real host refuses a hardware version its ESXi
// release cannot run; with --strict-vmx the SOAP calls that create VMs are checked before
// dispatch. It is off by default so that tests can still put a vmx-17 VM on ESXi 6.7 hosts
// (as a template registered from a newer cluster would be).
var (
	ovapipeStrictVMX    bool
	ovapipeGatedMethods = map[string]bool{"CreateVM_Task": true, "ImportVApp": true}
	ovapipeVersionRE    = regexp.MustCompile(`<(?:\w+:)?version(?:\s[^>]*)?>\s*vmx-(\d+)\s*</`)
)

// ovapipeUnsupportedVMX returns a fault when the request asks for a hardware version the
// configured ESXi version cannot create.
func ovapipeUnsupportedVMX(method string, body []byte) *soap.Fault {
	if !ovapipeStrictVMX || !ovapipeGatedMethods[method] {
		return nil
	}
	creatable := map[int]bool{}
	for _, v := range ovapipeCreatable {
		creatable[v] = true
	}
	for _, m := range ovapipeVersionRE.FindAllSubmatch(body, -1) {
		vmx, err := strconv.Atoi(string(m[1]))
		if err != nil || creatable[vmx] {
			continue
		}
		newest := ovapipeCreatable[len(ovapipeCreatable)-1]
		msg := fmt.Sprintf("hardware version vmx-%d is not supported by the hosts (ESXi %s creates up to vmx-%d)",
			vmx, ovapipeESXVersion, newest)
		return Fault(msg, &types.InvalidArgument{InvalidProperty: "configSpec.version"})
	}
	return nil
}

// ovapipeWriteFault answers a SOAP fault the way Debian's ServeSDK does.
func ovapipeWriteFault(w http.ResponseWriter, f *soap.Fault) {
	var out bytes.Buffer
	fmt.Fprint(&out, xml.Header)
	e := xml.NewEncoder(&out)
	err := e.Encode(&soapEnvelope{
		Enc: "http://schemas.xmlsoap.org/soap/encoding/",
		Env: "http://schemas.xmlsoap.org/soap/envelope/",
		XSD: "http://www.w3.org/2001/XMLSchema",
		XSI: "http://www.w3.org/2001/XMLSchema-instance",
		Body: struct {
			Fault *soapFault
		}{
			&soapFault{
				Code:   f.Code,
				String: f.String,
				Detail: struct {
					Fault *faultDetail
				}{&faultDetail{f.Detail.Fault}},
			},
		},
	})
	if err == nil {
		err = e.Flush()
	}
	if err != nil {
		log.Printf("error encoding fault: %s", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write(out.Bytes())
}
