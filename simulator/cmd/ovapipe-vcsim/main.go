// Command ovapipe-vcsim serves Debian's govmomi vSphere simulator over HTTPS on loopback,
// extended with ovapipe's additions (see simulator/ext, compiled into a build-time copy of
// the simulator package).
package main

import (
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/simulator"
	// The vAPI simulator (content library, tagging) registers its /rest endpoints when imported.
	_ "github.com/vmware/govmomi/vapi/simulator"
)

// ovapipeMaxCount bounds every inventory count (memory, start-up time).
const ovapipeMaxCount = 16

type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func main() {
	var opts simulator.OvapipeOptions
	var gpus repeated
	flag.StringVar(&opts.VCVersion, "vc-version", "7.0.3", "vCenter version reported by about")
	flag.StringVar(&opts.ESXVersion, "esx-version", "7.0.3", "ESXi version of every host")
	flag.Var(&gpus, "gpu", "HOST_GLOB=VENDOR:DEVICE[:STATE[:CLASS]] passthrough PCI device, hex IDs; STATE active (default), enabled, disabled or incapable; CLASS default 0302 (repeatable)")
	flag.StringVar(&opts.RefusePassthru, "refuse-passthru", "", "host name glob whose UpdatePassthruConfig fails")
	flag.BoolVar(&opts.NoDefaultGPU, "no-default-gpu", false, "no Tesla T4 on the hosts of each datacenter's first cluster (DCn_C0)")
	flag.IntVar(&opts.Datacenters, "datacenters", 1, "datacenters DC0..DCn-1, each with its own clusters, hosts, datastore and network")
	flag.IntVar(&opts.Clusters, "clusters", 1, "clusters per datacenter (DCn_C0...)")
	flag.IntVar(&opts.ClusterHosts, "cluster-hosts", 3, "hosts per cluster (DCn_C0_H0...)")
	flag.IntVar(&opts.Hosts, "hosts", 1, "standalone hosts per datacenter (DCn_H0...)")
	flag.StringVar(&opts.InstallerVM, "installer-vm", "", "VM name glob whose power-on runs the simulated installer")
	flag.StringVar(&opts.InstallerDisk, "installer-disk", "", "streamOptimized VMDK the installer writes as the first disk")
	flag.Float64Var(&opts.InstallerSeconds, "installer-seconds", 3, "seconds the simulated install takes")
	flag.IntVar(&opts.Port, "port", 0, "port on 127.0.0.1 (0: a free one)")
	flag.StringVar(&opts.InfoFile, "info-file", "", "write the connection settings as JSON to this file")
	flag.BoolVar(&opts.StrictVMX, "strict-vmx", false, "refuse creating VMs whose hardware version the ESXi version cannot run")
	flag.StringVar(&opts.Username, "username", "user", "login user name")
	printTable := flag.Bool("print-hardware-table", false, "print the vmx -> ESXi table as JSON and exit")
	flag.Parse()
	opts.GPUs = gpus
	opts.Password = os.Getenv("OVAPIPE_SIM_PASSWORD")
	if opts.Password == "" {
		opts.Password = "pass"
	}

	if *printTable {
		fmt.Println(simulator.OvapipeHardwareTableJSON())
		return
	}
	if err := checkFlags(opts); err != nil {
		fmt.Fprintf(os.Stderr, "ovapipe-vcsim: %s\n", err)
		os.Exit(2)
	}
	if err := simulator.OvapipeRun(opts); err != nil {
		fmt.Fprintf(os.Stderr, "ovapipe-vcsim: %s\n", err)
		os.Exit(2)
	}
}

// checkFlags refuses what would otherwise panic deep in the simulator (a port out of range or
// in use makes Service.NewServer panic with a Go stack) or half-start it.
func checkFlags(opts simulator.OvapipeOptions) error {
	if opts.Port < 0 || opts.Port > 65535 {
		return fmt.Errorf("--port %d: expected 0 (a free port) to 65535", opts.Port)
	}
	if opts.Port != 0 {
		listener, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.Port)))
		if err != nil {
			return fmt.Errorf("--port %d: cannot listen on 127.0.0.1: %s", opts.Port, err)
		}
		listener.Close()
	}
	for _, count := range []struct {
		flag       string
		value, min int
	}{{"--datacenters", opts.Datacenters, 1}, {"--clusters", opts.Clusters, 0},
		{"--cluster-hosts", opts.ClusterHosts, 1}, {"--hosts", opts.Hosts, 0}} {
		if count.value < count.min || count.value > ovapipeMaxCount {
			return fmt.Errorf("%s %d: expected %d to %d", count.flag, count.value, count.min, ovapipeMaxCount)
		}
	}
	if opts.Clusters == 0 && opts.Hosts == 0 {
		return fmt.Errorf("--clusters 0 --hosts 0: a datacenter needs at least one host")
	}
	if math.IsNaN(opts.InstallerSeconds) || math.IsInf(opts.InstallerSeconds, 0) || opts.InstallerSeconds < 0 {
		return fmt.Errorf("--installer-seconds %v: expected a number of seconds, 0 or more", opts.InstallerSeconds)
	}
	if opts.InstallerDisk != "" && opts.InstallerVM == "" {
		return fmt.Errorf("--installer-disk needs --installer-vm (the VM name glob whose power-on writes it)")
	}
	if opts.InstallerVM != "" && opts.InstallerDisk == "" {
		return fmt.Errorf("--installer-vm needs --installer-disk")
	}
	return nil
}
