package simulator

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"

	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/simulator/vpx"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// ovapipeVMXMinESXi mirrors VMX_MIN_ESXI in ovapipe/hardware.py (the one table);
// tests/test_simulator.py checks that the two agree via --print-hardware-table.
var ovapipeVMXMinESXi = map[int]string{
	4:  "3.5",
	7:  "4.0",
	8:  "5.0",
	9:  "5.1",
	10: "5.5",
	11: "6.0",
	13: "6.5",
	14: "6.7",
	15: "6.7U2",
	17: "7.0",
	18: "7.0U1",
	19: "7.0U2",
	20: "8.0",
	21: "8.0U2",
	22: "9.0",
}

// OvapipeHardwareTableJSON is the table as {"13": "6.5", ...}.
func OvapipeHardwareTableJSON() string {
	table := make(map[string]string, len(ovapipeVMXMinESXi))
	for vmx, esxi := range ovapipeVMXMinESXi {
		table[strconv.Itoa(vmx)] = esxi
	}
	data, _ := json.Marshal(table)
	return string(data)
}

var ovapipeESXiRE = regexp.MustCompile(`^(\d+)\.(\d+)(?:\.(\d+))?(?:\s*[uU](\d+))?$`)

// ovapipeESXiKey orders versions as hardware.esxi_key does: 7.0U1 == 7.0.1.
func ovapipeESXiKey(version string) ([3]int, error) {
	m := ovapipeESXiRE.FindStringSubmatch(version)
	if m == nil {
		return [3]int{}, fmt.Errorf("not an ESXi/vCenter version: %q (expected e.g. 7.0.3)", version)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	patch := 0
	if m[4] != "" {
		patch, _ = strconv.Atoi(m[4])
	} else if m[3] != "" {
		patch, _ = strconv.Atoi(m[3])
	}
	return [3]int{major, minor, patch}, nil
}

func ovapipeKeyLess(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// ovapipeCreatableVMX lists the hardware versions an ESXi release can create, oldest first.
func ovapipeCreatableVMX(esxVersion string) ([]int, error) {
	key, err := ovapipeESXiKey(esxVersion)
	if err != nil {
		return nil, err
	}
	var versions []int
	for vmx, minimum := range ovapipeVMXMinESXi {
		need, err := ovapipeESXiKey(minimum)
		if err != nil {
			return nil, err
		}
		if !ovapipeKeyLess(key, need) {
			versions = append(versions, vmx)
		}
	}
	sort.Ints(versions)
	if len(versions) == 0 {
		return nil, fmt.Errorf("ESXi %s is older than every hardware version in the table", esxVersion)
	}
	return versions, nil
}

var (
	ovapipeCreatable  []int
	ovapipeESXVersion string
)

// Build numbers of the GA releases, so fullName looks like the real thing.
var ovapipeBuilds = map[string][2]string{
	"6.5.0": {"5973321", "5969303"},
	"6.7.0": {"8217866", "8169922"},
	"7.0.0": {"15952498", "15843807"},
	"7.0.1": {"16858589", "16850804"},
	"7.0.2": {"17694817", "17630552"},
	"7.0.3": {"18700403", "18644231"},
	"8.0.0": {"20519528", "20513097"},
}

func ovapipeAPIVersion(key [3]int) string {
	if key[2] == 0 {
		return fmt.Sprintf("%d.%d", key[0], key[1])
	}
	if key[0] >= 7 {
		return fmt.Sprintf("%d.%d.%d.0", key[0], key[1], key[2])
	}
	return fmt.Sprintf("%d.%d.%d", key[0], key[1], key[2])
}

func ovapipeAbout(about *types.AboutInfo, product string, key [3]int, build string) {
	version := fmt.Sprintf("%d.%d.%d", key[0], key[1], key[2])
	about.Version = version
	about.Build = build
	about.FullName = fmt.Sprintf("%s %s build-%s", product, version, build)
	about.ApiVersion = ovapipeAPIVersion(key)
	about.LicenseProductVersion = fmt.Sprintf("%d.0", key[0])
}

// ovapipeSetVersions sets about, every host's config.product and the default hardware
// version; it must run before Model.Create, which copies these package variables.
func ovapipeSetVersions(vcVersion, esxVersion string) error {
	vcKey, err := ovapipeESXiKey(vcVersion)
	if err != nil {
		return fmt.Errorf("--vc-version: %s", err)
	}
	esxKey, err := ovapipeESXiKey(esxVersion)
	if err != nil {
		return fmt.Errorf("--esx-version: %s", err)
	}
	if ovapipeKeyLess(vcKey, esxKey) {
		return fmt.Errorf("--vc-version %s is older than --esx-version %s: vCenter cannot manage newer hosts", vcVersion, esxVersion)
	}
	ovapipeESXVersion = esxVersion
	ovapipeCreatable, err = ovapipeCreatableVMX(esxVersion)
	if err != nil {
		return fmt.Errorf("--esx-version: %s", err)
	}
	builds := func(key [3]int, i int) string {
		if b, ok := ovapipeBuilds[fmt.Sprintf("%d.%d.%d", key[0], key[1], key[2])]; ok {
			return b[i]
		}
		return "1000000"
	}
	ovapipeAbout(&vpx.ServiceContent.About, "VMware vCenter Server", vcKey, builds(vcKey, 0))
	ovapipeAbout(&esx.ServiceContent.About, "VMware ESXi", esxKey, builds(esxKey, 1))
	ovapipeAbout(&esx.HostConfigInfo.Product, "VMware ESXi", esxKey, builds(esxKey, 1))
	esx.HardwareVersion = fmt.Sprintf("vmx-%d", ovapipeCreatable[len(ovapipeCreatable)-1])
	return nil
}

// OvapipeEnvironmentBrowser replaces Debian's EnvironmentBrowser objects in the registry
// (methods dispatch on the stored Go type) to answer for the configured ESXi version and
// to report passthrough devices.
type OvapipeEnvironmentBrowser struct {
	mo.EnvironmentBrowser
}

func ovapipeReplaceEnvironmentBrowsers() {
	var browsers []*EnvironmentBrowser
	for _, obj := range Map.objects {
		if b, ok := obj.(*EnvironmentBrowser); ok {
			browsers = append(browsers, b)
		}
	}
	for _, b := range browsers {
		Map.Put(&OvapipeEnvironmentBrowser{EnvironmentBrowser: b.EnvironmentBrowser})
	}
}

func (b *OvapipeEnvironmentBrowser) debian() *EnvironmentBrowser {
	return &EnvironmentBrowser{EnvironmentBrowser: b.EnvironmentBrowser}
}

func (b *OvapipeEnvironmentBrowser) QueryConfigOption(req *types.QueryConfigOption) soap.HasFault {
	body := b.debian().QueryConfigOption(req).(*methods.QueryConfigOptionBody)
	if req.Key != "" && body.Res != nil && body.Res.Returnval != nil {
		body.Res.Returnval.Version = req.Key
	}
	return body
}

func (b *OvapipeEnvironmentBrowser) QueryConfigOptionEx(req *types.QueryConfigOptionEx) soap.HasFault {
	body := b.debian().QueryConfigOptionEx(req).(*methods.QueryConfigOptionExBody)
	if req.Spec != nil && req.Spec.Key != "" && body.Res != nil && body.Res.Returnval != nil {
		body.Res.Returnval.Version = req.Spec.Key
	}
	return body
}

func (b *OvapipeEnvironmentBrowser) QueryConfigOptionDescriptor(ctx *Context, req *types.QueryConfigOptionDescriptor) soap.HasFault {
	hosts := b.debian().hosts(ctx)
	body := &methods.QueryConfigOptionDescriptorBody{
		Res: new(types.QueryConfigOptionDescriptorResponse),
	}
	newest := ovapipeCreatable[len(ovapipeCreatable)-1]
	for _, vmx := range ovapipeCreatable {
		key := fmt.Sprintf("vmx-%d", vmx)
		body.Res.Returnval = append(body.Res.Returnval, types.VirtualMachineConfigOptionDescriptor{
			Key:                 key,
			Description:         fmt.Sprintf("ESXi %s virtual machine", ovapipeVMXMinESXi[vmx]),
			Host:                hosts,
			CreateSupported:     types.NewBool(true),
			DefaultConfigOption: types.NewBool(vmx == newest),
			RunSupported:        types.NewBool(true),
			UpgradeSupported:    types.NewBool(true),
		})
	}
	return body
}

func (b *OvapipeEnvironmentBrowser) QueryConfigTarget(ctx *Context, req *types.QueryConfigTarget) soap.HasFault {
	body := b.debian().QueryConfigTarget(ctx, req).(*methods.QueryConfigTargetBody)
	if body.Res == nil || body.Res.Returnval == nil {
		return body
	}
	hosts := b.debian().hosts(ctx)
	if req.Host != nil {
		hosts = []types.ManagedObjectReference{*req.Host}
	}
	ovapipeAddPassthroughTargets(body.Res.Returnval, hosts)
	return body
}
